"""The campaign's packing between GPU runs: bounded, resumable state; parts under the file limit; the data tar."""

import tarfile

import pytest

from cosinegate.research import campaign as cp
from cosinegate.errors import CosineGateError
from cosinegate.training.checkpoint import load_checkpoint


def _fake_runs():
    return cp.plan(cp.TINY_STAGES, 2, 1, "/data", None, finetune_epochs=1)


def test_plan_puts_the_resnet20_goals_first_and_each_run_once():
    runs = cp.plan(cp.STAGES, 160, 2, "/data")
    names = [r.name for r in runs]
    assert len(names) == len(set(names)) and names[:2] == ["resnet20-dense-s0", "resnet20-dense-s1"]
    r56 = [r for r in runs if r.backbone == "resnet56" and r.preset == "rates"]
    assert r56 and all(r.args[r.args.index("--block-rates") + 1] == "0.5" for r in r56)
    paper = next(r for r in runs if r.preset == "paper")
    assert "--schedule" not in paper.args and "--lr" not in paper.args  # the authors' own recipe
    assert {r.backbone for r in runs} == {"resnet20", "resnet32", "resnet44", "resnet56", "paper8"}


def test_state_carries_what_the_next_run_needs(tmp_path, tiny_checkpoint):
    """A partial run: last.pt (with optimizer) and best.pt (without); a finished dense run whose two-phase run is
    still pending: its summary and a model-only last.pt (the teacher), also returned once as a final."""
    import shutil

    runs = _fake_runs()
    work = tmp_path / "work"
    dense, rates = work / "runs/resnet20-dense-s0", work / "runs/resnet20-rates-s0"
    for folder in (dense, rates):
        folder.mkdir(parents=True)
        shutil.copy(tiny_checkpoint, folder / "last.pt")
        shutil.copy(tiny_checkpoint, folder / "best.pt")
        (folder / "metrics.jsonl").write_text('{"epoch": 1}\n')
        (folder / "train.log").write_text("x" * 50_000)
    (dense / "summary.json").write_text("{}")
    state, finals = cp.state_members(work, runs)
    names = dict(state)
    assert "runs/resnet20-rates-s0/last.pt" in names and "runs/resnet20-rates-s0/best.pt" in names
    assert "runs/resnet20-dense-s0/last.pt" in names and "runs/resnet20-dense-s0/best.pt" not in names
    assert len(names["runs/resnet20-rates-s0/train.log"]) == 20_000
    assert [n for n, _ in finals] == ["runs/resnet20-dense-s0/last.pt"]
    assert len(names["runs/resnet20-dense-s0/last.pt"]) < 0.7 * (dense / "last.pt").stat().st_size  # no optimizer

    (tmp_path / "out1").mkdir()
    paths = cp.write_parts(state, tmp_path / "out1", "state", part_bytes=3 * 2**20)
    assert len(paths) >= 2 and all(p.stat().st_size <= 3 * 2**20 for p in paths)
    again = tmp_path / "again"
    cp.unpack_state(tmp_path / "out1", again)
    restored = load_checkpoint(again / "runs/resnet20-rates-s0/last.pt")
    assert "optimizer" in restored and "optimizer" not in load_checkpoint(again / "runs/resnet20-dense-s0/last.pt")
    assert (again / "runs/resnet20-dense-s0/.returned").exists()  # finished before: not returned again
    assert cp.state_members(again, runs)[1] == []
    with pytest.raises(CosineGateError, match="over one part"):
        cp.write_parts([("big", b"x" * 2**20)], tmp_path, "state", part_bytes=2**19)


def test_state_refuses_paths_outside_the_work_folder(tmp_path):
    import io

    bad = tmp_path / "state" / "state-1.tar"
    bad.parent.mkdir()
    with tarfile.open(bad, "w") as tar:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    with pytest.raises(CosineGateError, match="outside the folder"):
        cp.unpack_state(bad.parent, tmp_path / "work")
    assert not (tmp_path / "escaped.txt").exists()


def test_data_tar_roundtrip(tmp_path):
    from conftest import write_image_tree

    src = tmp_path / "jpeg"
    write_image_tree(src, classes=("ant", "bee"), train_per_class=3, test_per_class=2)
    count, size = cp.make_data_tar(src, tmp_path / "c/data.tar.gz", per_class=2)
    assert count == 8 and size > 0
    root = cp.unpack_data(tmp_path / "c/data.tar.gz", tmp_path / "unpacked")
    assert sorted(p.name for p in (root / "train").iterdir()) == ["ant", "bee"]
    assert len(list((root / "train/ant").iterdir())) == 2
    with pytest.raises(CosineGateError, match="--make-tar"):
        cp.unpack_data(tmp_path / "missing.tar.gz", tmp_path / "x")


def test_campaign_script_make_tar_writes_its_json_report(tmp_path):
    import json

    from conftest import run_script, write_image_tree

    write_image_tree(tmp_path / "jpeg", classes=("ant", "bee"), train_per_class=3, test_per_class=2)
    done = run_script("train/campaign.py", "--make-tar", tmp_path / "jpeg", tmp_path / "d.tar.gz", "--per-class", "2",
                      "--json", tmp_path / "r.json")
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["images"] == 8 and report["bytes"] == (tmp_path / "d.tar.gz").stat().st_size


def test_state_bound_fits_the_carry_limit():
    data_tar = 20 * 2**20
    assert cp.STATE_LIMIT_BYTES + data_tar + 8 * 2**20 < 64 * 2**20  # state + data + working tree
    assert cp.state_bytes("resnet56") > 2.5 * cp.state_bytes("resnet20")
    assert cp.state_bytes("resnet110") * 2 / 3 < cp.PART_BYTES  # its last.pt (weights + momentum) fits one part


def test_progress_counts_whole_epochs_of_a_metrics_log_a_kill_cut_short(tmp_path):
    """A kill leaves a half-written last line (and a resumed run may log an epoch again): counted once, never a
    JSONDecodeError."""
    run = _fake_runs()[0]
    folder = tmp_path / "runs" / run.name
    folder.mkdir(parents=True)
    (folder / "metrics.jsonl").write_text('{"epoch": 1}\n{"epoch": 2}\n{"epoch": 2}\n{"epoch": 3, "train_lo')
    assert cp.progress_report(tmp_path, [run])[run.name]["epochs_done"] == 2
