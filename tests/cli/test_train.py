"""The command scripts: every bad input gets exit 2 and one `error:` line (no traceback, no half-written file);
`train/evaluate.py --json` writes the report."""

import json
import shutil

import pytest
import torch

from conftest import run_script, write_image_tree
from cosinegate.training.checkpoint import load_checkpoint

REQUIRED = {
    "mode", "backbone", "top1", "dense_macs", "executed_macs", "real_savings", "nominal_savings",
    "skip_rates", "num_images", "block_classes", "static_savings", "dynamic_savings",
}


def assert_user_error(result, *fragments):
    """Exit 2, exactly one stderr line starting with `error:` that names each fragment, no traceback."""
    assert result.returncode == 2, (result.returncode, result.stdout[-1500:], result.stderr[-1500:])
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])
    return errors[0]


def assert_no_run_files(out):
    if out.exists():
        names = [p.name for p in out.iterdir()]
        assert "last.pt" not in names and "best.pt" not in names and "summary.json" not in names, names
        assert not [n for n in names if n.endswith(".tmp")], names


# ---- train/train.py ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, fragments",
    [
        # a misspelled name is argparse's refusal, before the config and torch load (it came after both)
        (["--backbone", "resnet99"], ["--backbone: invalid choice: 'resnet99'", "resnet20"]),
        (["--mode", "fast"], ["--mode: invalid choice: 'fast'", "predictive"]),
        (["--schedule", "cosin"], ["--schedule: invalid choice: 'cosin'", "cosine_restarts"]),
        (["--config", "fastest"], ["unknown config or preset 'fastest'", "balanced", "--config"]),
        (["--drop-blocks", "12", "--data", "cifar10", "--data-root", "{fake}"], ["out of range", "0-based"]),
        (["--data", "imagefolder"], ["needs --data-root"]),
    ],
)
def test_train_bad_choices(tmp_path, fake_cifar_root, args, fragments):
    out = tmp_path / "run"
    args = [str(fake_cifar_root) if a == "{fake}" else a for a in args]
    assert_user_error(run_script("train/train.py", *args, "--epochs", "1", "--no-progress", "--out", out), *fragments)
    assert_no_run_files(out)


def _imagefolder_train(root, out):
    return run_script("train/train.py", "--data", "imagefolder", "--data-root", root, "--epochs", "1", "--no-progress", "--out", out)


def test_train_data_root_wrong_layout(tmp_path):
    root = tmp_path / "flat"
    root.mkdir()
    (root / "cat.jpg").write_bytes(b"")
    out = tmp_path / "run"
    assert_user_error(_imagefolder_train(root, out), "no train/ folder", "ROOT/train/<class>/")
    assert_no_run_files(out)
    missing = _imagefolder_train(tmp_path / "nowhere", out)
    assert_user_error(missing, "does not exist", "--data-root")


def test_train_data_root_without_images(tmp_path):
    root = tmp_path / "empty"
    for split in ("train", "test"):
        (root / split / "cat").mkdir(parents=True)
        (root / split / "cat" / "notes.txt").write_text("no images here")
    out = tmp_path / "run"
    assert_user_error(_imagefolder_train(root, out), "no images under", "*.jpg")
    assert_no_run_files(out)


def test_train_class_folder_mismatch(tmp_path):
    root = tmp_path / "images"
    write_image_tree(root, classes=("ant", "bee"), train_per_class=2, test_per_class=1)
    shutil.rmtree(root / "test" / "bee")
    out = tmp_path / "run"
    assert_user_error(_imagefolder_train(root, out), "class folders differ", "only in train: ['bee']", "same class folders")
    assert_no_run_files(out)


def test_train_nan_loss(tmp_path, fake_cifar_root):
    out = tmp_path / "run"
    result = run_script(
        "train/train.py", "--data", "cifar10", "--data-root", fake_cifar_root, "--epochs", "1", "--batch-size", "32",
        "--lr", "1e30", "--no-progress", "--out", out,
    )
    line = assert_user_error(result, "loss became", "lower optim.lr")
    assert "nan" in line.lower() or "inf" in line.lower()
    assert_no_run_files(out)


def test_train_nan_loss_keeps_previous_checkpoint(tmp_path, tiny_run):
    """A NaN in a resumed run leaves the previous last.pt untouched (byte for byte)."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    state = load_checkpoint(run / "last.pt")
    state["config"]["optim"]["epochs"] = 3  # one more epoch to train
    state["config"]["optim"]["lr"] = 1e30  # ... which blows up
    torch.save(state, run / "last.pt")
    before = (run / "last.pt").read_bytes()
    c = state["config"]
    result = run_script(
        "train/train.py", "--config", "balanced", "--data", "cifar10", "--data-root", c["data"]["root"], "--mode", "predictive",
        "--epochs", "3", "--batch-size", "64", "--lr", "1e30", "--no-progress", "--out", run, "--resume",
    )
    assert_user_error(result, "loss became", "--resume")
    assert (run / "last.pt").read_bytes() == before
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]


# ---- train/evaluate.py ---------------------------------------------------------------------------------


def test_evaluate_json(tmp_path, tiny_checkpoint):
    out = tmp_path / "eval.json"
    result = run_script("train/evaluate.py", "--checkpoint", tiny_checkpoint, "--subset", "50", "--json", out)
    assert result.returncode == 0, result.stderr[-2000:]
    rep = json.loads(out.read_text())
    assert REQUIRED <= set(rep)
    assert rep["mode"] == "predictive" and rep["backbone"] == "resnet20" and rep["num_images"] == 50
    assert 0 <= rep["top1"] <= 1 and 0 <= rep["nominal_savings"] <= 1
    assert rep["dense_macs"] == 40_551_040 and len(rep["skip_rates"]) == 9
    assert rep["real_savings"] == pytest.approx(1 - rep["executed_macs"] / rep["dense_macs"])
    assert "real savings" in result.stdout and "nominal" in result.stdout and "dense MACs" in result.stdout


def test_evaluate_missing_checkpoint(tmp_path):
    out = tmp_path / "eval.json"
    result = run_script("train/evaluate.py", "--checkpoint", tmp_path / "nope.pt", "--json", out)
    assert_user_error(result, "nope.pt not found", "cosinegate train")
    assert not out.exists()


def test_evaluate_plain_pickle_is_named_without_torch_warnings(tmp_path):
    import pickle

    bad = tmp_path / "plain.pt"
    bad.write_bytes(pickle.dumps({"model": {}}, protocol=4))
    result = run_script("train/evaluate.py", "--checkpoint", bad)
    assert_user_error(result, "plain pickle", "cosinegate train")
    assert "Warning" not in result.stderr


def test_evaluate_corrupt_checkpoint(tmp_path):
    bad = tmp_path / "garbage.pt"
    bad.write_bytes(b"\x00\x13garbage bytes, not a checkpoint" * 10)
    out = tmp_path / "eval.json"
    assert_user_error(run_script("train/evaluate.py", "--checkpoint", bad, "--json", out), "corrupt or unreadable", "retrain or restore")
    assert not out.exists()
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    assert_user_error(run_script("train/evaluate.py", "--checkpoint", foreign), "not a CosineGate checkpoint")


def test_evaluate_backbone_mismatch(tmp_path, tiny_checkpoint):
    out = tmp_path / "eval.json"
    result = run_script("train/evaluate.py", "--checkpoint", tiny_checkpoint, "--backbone", "resnet56", "--json", out)
    assert_user_error(result, "holds a resnet20 but --backbone resnet56", "drop --backbone")
    assert not out.exists()


def test_evaluate_wrong_data(tmp_path, tiny_checkpoint):
    root = tmp_path / "images"
    write_image_tree(root, classes=("ant", "bee", "cat"), train_per_class=1, test_per_class=1)
    out = tmp_path / "eval.json"
    result = run_script("train/evaluate.py", "--checkpoint", tiny_checkpoint, "--data", "imagefolder", "--data-root", root, "--json", out)
    assert_user_error(result, "3 classes", "trained on 10")
    assert not out.exists()


# ---- issue 23's training leftovers: an empty --out, an --init-from without a config, --jobs 0, a config's data root --
def test_train_refuses_an_empty_out():
    assert_user_error(run_script("train/train.py", "--config", "dense", "--epochs", "1", "--out", ""), "--out is empty")


def test_threads_are_set_and_recorded(tmp_path):
    """A new user's finding: on a busy 2-core machine torch's two threads ran ~9x slower than one; --threads sets it."""
    import json

    result = run_script("train/train.py", "--config", "dense", "--subset", "40", "--epochs", "1", "--threads", "3",
                        "--no-progress", "--out", tmp_path / "run")
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["hardware"].endswith(", 3 threads)")  # the tests run with 1


def test_init_from_a_checkpoint_without_a_config(tmp_path):
    import torch

    from cosinegate.training.checkpoint import FORMAT

    empty = tmp_path / "empty.pt"
    torch.save({"format": FORMAT, "config": {}, "model": {}}, empty)
    result = run_script("train/train.py", "--config", "dense", "--init-from", empty, "--subset", "40", "--epochs", "1",
                        "--out", tmp_path / "run")
    assert_user_error(result, str(empty), "no model config")


def test_jobs_must_be_at_least_one():
    from cosinegate.errors import CosineGateError
    from cosinegate.research.packing import parse_levels, resolve_jobs

    for jobs in ("0", "-2", "many"):
        with pytest.raises(CosineGateError, match="at least 1"):
            resolve_jobs(jobs, "1", "cpu", "/nonexistent", 3)
    with pytest.raises(CosineGateError, match="--jobs-levels '0,-1'"):
        parse_levels("0,-1")
    assert parse_levels("4,1,2,2") == [1, 2, 4]


@pytest.mark.parametrize("chosen", [-7, 0, "2", True, None])
def test_a_measured_concurrency_file_with_no_count_is_refused(tmp_path, chosen):
    """concurrency.json travels in the campaign's state: chosen=-7 used to start nothing until the deadline."""
    import json

    from cosinegate.errors import CosineGateError
    from cosinegate.research.packing import resolve_jobs
    from cosinegate.training.loop import hardware_label

    (tmp_path / "concurrency.json").write_text(json.dumps({"hardware": hardware_label("cpu"), "setting": "fp32",
                                                           "chosen": chosen}))
    with pytest.raises(CosineGateError, match="not a number of runs"):
        resolve_jobs("auto", "1", "cpu", tmp_path, 3)
    (tmp_path / "concurrency.json").write_text("[1]")
    with pytest.raises(CosineGateError, match="not an object"):
        resolve_jobs("auto", "1", "cpu", tmp_path, 3)


def test_a_config_file_naming_a_cifar10_root_never_downloads_into_it(tmp_path):
    """Only a --data-root given on the command line may be downloaded into; a root a YAML file names is read only."""
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    config = tmp_path / "c.yaml"
    config.write_text(f"model: {{backbone: resnet20, mode: none}}\ndata: {{source: cifar10, root: {foreign}}}\n")
    result = run_script("train/train.py", "--config", config, "--epochs", "1", "--out", tmp_path / "run")
    assert_user_error(result, "no CIFAR-10 python batches", "downloads it")
    assert list(foreign.iterdir()) == []


@pytest.mark.parametrize("preset, flag, message", [
    ("rates", ["--target", "0.5"], "has no compute penalty (gate.penalty 0"),
    ("balanced", ["--block-rates", "0.5"], "which balanced does not train toward (gate.block_rate_weight 0)"),
])
def test_a_loss_flag_the_preset_ignores_is_refused(preset, flag, message, tmp_path):
    from scripts_in_process import run

    code, _, err = run("train/train.py", "--config", preset, *flag, "--epochs", "1", "--out", tmp_path / "run")
    assert code == 2 and message in err and err.count("\n") == 1 and not (tmp_path / "run").exists()


def test_a_torchrun_rank_other_than_the_main_one_prints_nothing(monkeypatch, tmp_path, capsys):
    """Under torchrun every rank runs train.py; only the main rank's train() returns the summary (the others None),
    and only it prints the table and writes --json."""
    import cosinegate.cli.train as train_command
    import cosinegate.training.loop as loop

    monkeypatch.setattr(loop, "train", lambda *args, **kwargs: None)  # what a non-main rank's train() returns
    report = tmp_path / "summary.json"
    assert not train_command.main(["--config", "dense", "--data", "synthetic", "--epochs", "1", "--no-progress", "--out",
                                   str(tmp_path / "run"), "--json", str(report)])
    assert capsys.readouterr() == ("", "") and not report.exists()
