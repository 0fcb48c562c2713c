"""One GPU run of the campaign (its orchestration, with training and the probes replaced) and absorbing its files."""

import io
import json
import os
import shutil
import tarfile

import pytest

from cosinegate.errors import CosineGateError
from cosinegate.research import campaign as cp
from cosinegate.research import campaign_run as cr


def _tar(path, members):
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _returned(folder, record=None):
    folder.mkdir(parents=True)
    (folder / "campaign.json").write_text(json.dumps(record or {"jobs": 2, "failed": []}))
    _tar(folder / "state-1.tar", {"runs/a/last.pt": b"state"})
    _tar(folder / "finals-1.tar", {"runs/a/last.pt": b"final"})
    (folder / "results.md").write_text("| table |\n")
    return folder


def test_absorb_replaces_the_state_unpacks_finals_and_logs_each_run(tmp_path):
    carry, results = tmp_path / ".campaign/state", tmp_path / "results"
    carry.mkdir(parents=True)
    (carry / "state-9.tar").write_bytes(b"old")
    first = cr.absorb(_returned(tmp_path / "gpu1"), results, carry)
    assert sorted(p.name for p in carry.iterdir()) == ["state-1.tar"] and first.states == 1
    assert (tmp_path / ".campaign/finals/runs/a/last.pt").read_bytes() == b"final"
    assert (results / "results.md").read_text() == "| table |\n"
    cr.absorb(_returned(tmp_path / "gpu2", {"jobs": 3, "failed": []}), results, carry)
    log = [json.loads(line) for line in (results / "campaign-log.jsonl").read_text().splitlines()]
    assert [r["jobs"] for r in log] == [2, 3]


@pytest.mark.parametrize("damage", ["no-record", "not-json", "deep-record", "escaping-finals", "linked-finals",
                                    "linked-state", "truncated-state", "second-finals-bad"])
def test_absorb_refuses_a_bad_folder_in_one_line_and_keeps_the_old_state(tmp_path, damage):
    carry = tmp_path / ".campaign/state"
    carry.mkdir(parents=True)
    (carry / "state-1.tar").write_bytes(b"old")
    src = _returned(tmp_path / "gpu")
    if damage == "no-record":
        (src / "campaign.json").unlink()
    elif damage == "not-json":
        (src / "campaign.json").write_text("{")
    elif damage == "deep-record":  # json's RecursionError was a traceback
        (src / "campaign.json").write_text("[" * 100000)
    elif damage == "escaping-finals":
        _tar(src / "finals-1.tar", {"../../escaped.pt": b"x"})
    elif damage in ("linked-finals", "linked-state"):  # a link inside looped the finals' copy (41 copies, then a traceback)
        with tarfile.open(src / ("finals-2.tar" if damage == "linked-finals" else "state-2.tar"), "w") as tar:
            info = tarfile.TarInfo("runs/a/loop")
            info.type, info.linkname = tarfile.SYMTYPE, "."
            tar.addfile(info)
    elif damage == "truncated-state":
        (src / "state-1.tar").write_bytes((src / "state-1.tar").read_bytes()[:700])
    else:
        (src / "finals-2.tar").write_bytes(b"not a tar")
    with pytest.raises(CosineGateError) as info:
        cr.absorb(src, tmp_path / "results", carry)
    assert "\n" not in str(info.value)
    if damage in ("truncated-state", "linked-state"):
        assert str(src / ("state-2.tar" if damage == "linked-state" else "state-1.tar")) in str(info.value)  # the tar, not its folder
    assert (carry / "state-1.tar").read_bytes() == b"old" and not (tmp_path / "escaped.pt").exists()
    assert not (tmp_path / ".campaign/finals").exists()  # not half of the finals either
    assert not (tmp_path / "results/campaign-log.jsonl").exists()


def test_speed_flags_follow_the_bench(tmp_path):
    bench, said = tmp_path / "bench.json", []
    assert cr.speed_flags(bench, cuda=True, compile_=False, log=said.append) == ["--fast"]  # not measured yet
    assert cr.speed_flags(bench, cuda=False, compile_=True, log=said.append) == ["--compile"]
    bench.write_text(json.dumps({"rows": [{"setting": cr.FAST, "error": "out of memory"}, {"setting": "fp32"}]}))
    assert cr.speed_flags(bench, cuda=True, compile_=False, log=said.append) == [] and len(said) == 1
    bench.write_text(json.dumps({"rows": [{"setting": cr.FAST, "mode": "gated"}]}))
    assert cr.speed_flags(bench, cuda=True, compile_=True, log=said.append) == ["--fast", "--compile"]
    for bad in ({"rows": [{"x": 1}]}, {"rows": 3}, [1]):  # a traceback each (KeyError, TypeError, ...)
        bench.write_text(json.dumps(bad))
        with pytest.raises(CosineGateError, match="bench"):
            cr.speed_flags(bench, cuda=True, compile_=False, log=said.append)


def test_an_output_the_device_tool_would_cut_is_refused(tmp_path):
    for i in range(cr.MAX_FILES):
        (tmp_path / f"f{i}").write_text("x")
    assert len(cr.check_returned(tmp_path)) == cr.MAX_FILES
    with open(tmp_path / "f0", "wb") as handle:
        handle.truncate(cr.MAX_FILE_BYTES + 1)
    with pytest.raises(CosineGateError, match="over 16 MiB: \\['f0'\\]"):
        cr.check_returned(tmp_path)
    (tmp_path / "f0").write_text("x")
    (tmp_path / "one-more").write_text("x")
    with pytest.raises(CosineGateError, match="limit 8"):
        cr.check_returned(tmp_path)


def test_a_device_run_packs_what_the_next_run_resumes(tmp_path, tiny_checkpoint, monkeypatch):
    """Training replaced by a stand-in that leaves every run partial (one epoch, last.pt): the state carries every
    run's last.pt, campaign.json counts them, and a second run restores that state (not what an earlier local try left) and trains the same runs again."""
    from conftest import write_image_tree

    from cosinegate.research import packing

    write_image_tree(tmp_path / "jpeg", classes=("ant", "bee"), train_per_class=3, test_per_class=2)
    cp.make_data_tar(tmp_path / "jpeg", tmp_path / "data.tar.gz")
    monkeypatch.setenv("COSINEGATE_CACHE", str(tmp_path / "cache"))  # run_on_device sets it; restored after the test
    trained = []

    def fake_bench(device, steps, tiny, work, out, log):
        (out / "bench.txt").write_text("bench table\n")

    def fake_run_all(pending, out, device, jobs, extra, deadline, admit):
        for run in pending:
            folder = out / "runs" / run.name
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copy(tiny_checkpoint, folder / "last.pt")
            (folder / "metrics.jsonl").write_text('{"epoch": 1}\n')
            trained.append((run.name, jobs, tuple(extra)))
        return []

    monkeypatch.setattr(cr, "run_bench", fake_bench)
    monkeypatch.setattr(packing, "run_all", fake_run_all)
    settings = cr.RunSettings(out=str(tmp_path / "out1"), data_tar=str(tmp_path / "data.tar.gz"), device="cpu",
                              jobs="2", tiny=True, work=str(tmp_path / "work"))
    first = cr.run_on_device(settings)
    planned = [r.name for r in cp.plan(cp.TINY_STAGES, 2, 1, "/data", None, finetune_epochs=1)]
    assert sorted(first.runs) == sorted(planned) and first.counts() == {"partial": len(planned)}
    assert [t[0] for t in trained] == list(first.runs) and {t[1:] for t in trained} == {(2, ())}
    assert set(first.files) == {"bench.txt", "campaign.json", "state-1.tar"}
    record = json.loads((tmp_path / "out1/campaign.json").read_text())
    assert record["runs"] == first.runs and record["jobs"] == 2 and record["log"] == first.log
    assert os.environ["COSINEGATE_CACHE"] == str(tmp_path / "cache")  # the process's own setting, back
    with tarfile.open(tmp_path / "out1/state-1.tar") as tar:
        assert {f"runs/{name}/last.pt" for name in planned} <= set(tar.getnames())

    (tmp_path / f"work/campaign/runs/{planned[0]}/summary.json").write_text("{}")  # a local try's, not the state's
    trained.clear()
    again = cr.run_on_device(cr.RunSettings(**{**settings.__dict__, "out": str(tmp_path / "out2"),
                                               "state": str(tmp_path / "out1")}))
    assert "state: 1 tars restored" in again.log[0] and sorted(t[0] for t in trained) == sorted(planned)
