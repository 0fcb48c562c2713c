"""Training: presets, schedules, run artifacts, deterministic resume after kill -9, DDP on CPU (gloo)."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import pytest
import torch

from conftest import ROOT, run_script, script_env
from cosinegate.config import CONFIG_DIR, DEFAULTS, load_config, merge, preset_names, validate
from cosinegate.errors import CosineGateError
from cosinegate.training import schedules
from cosinegate.training.checkpoint import load_checkpoint, model_from_checkpoint

# ---- configs -----------------------------------------------------------------------------------------


def test_presets():
    assert {"paper", "aggressive", "balanced", "conservative", "dense"} <= set(preset_names())
    targets = {}
    for name in ("aggressive", "balanced", "conservative"):
        config = validate(load_config(name))
        assert config["model"]["mode"] == "predictive" and config["name"] == name
        targets[name] = config["gate"]["target"]
    assert targets["aggressive"] < targets["balanced"] < targets["conservative"]
    assert validate(load_config("dense"))["model"]["mode"] == "none"


def test_paper_preset_is_the_authors_recipe():
    c = validate(load_config("paper"))
    assert c["model"] == {**c["model"], "backbone": "paper8", "mode": "paper"}
    o = c["optim"]
    assert (o["lr"], o["momentum"], o["weight_decay"], o["batch_size"]) == (0.1, 0.9, 5e-4, 128)
    assert (o["schedule"], o["t0"], o["t_mult"], o["grad_clip"]) == ("cosine_restarts", 50, 2, 1.0)
    g = c["gate"]
    assert (g["penalty"], g["target"], g["ramp_epochs"], g["consistency_weight"]) == (2.5, 0.72, 40, 0.05)
    assert g["budget"] == "batch" and g["paper_exact"] is False and c["data"]["augment"] is True


def test_config_errors(tmp_path):
    with pytest.raises(CosineGateError, match="unknown config or preset 'fastest'.*balanced"):
        load_config("fastest")
    outside = tmp_path / "outside.yaml"  # attacker review: a preset name reached past the presets folder
    outside.write_text("optim: {epochs: 3}\n")
    relative = os.path.relpath(outside.with_suffix(""), CONFIG_DIR)
    with pytest.raises(CosineGateError, match="config file .*outside not found; fix the path, or name a preset: .*balanced"):
        load_config(relative)
    with pytest.raises(CosineGateError, match=r"^config file my/run\.yml not found"):  # new-user audit: "unknown preset"
        load_config("my/run.yml")
    with pytest.raises(CosineGateError, match=r"^config .* is a folder; pass a YAML file"):
        load_config(str(tmp_path))
    with pytest.raises(CosineGateError, match="unknown key 'lrr'"):
        merge(DEFAULTS, {"optim": {"lrr": 1}})
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {backbone: [unclosed\n")
    with pytest.raises(CosineGateError, match="not valid YAML"):
        load_config(str(bad))
    config = load_config("balanced")
    config["gate"]["budget"] = "monthly"
    with pytest.raises(CosineGateError, match="gate.budget.*batch, sample, difficulty"):
        validate(config)
    config = load_config("balanced")
    config["gate"]["noise_end"] = 2.0
    with pytest.raises(CosineGateError, match="gate.noise_end.*\\[0, 1\\]"):
        validate(config)


def test_warm_restarts_schedule():
    optim = {"lr": 0.1, "epochs": 160, "schedule": "cosine_restarts", "t0": 50, "t_mult": 2}
    assert schedules.learning_rate(optim, 0) == pytest.approx(0.1)
    assert schedules.learning_rate(optim, 25) == pytest.approx(0.05)
    assert schedules.learning_rate(optim, 49.999) < 1e-4
    assert schedules.learning_rate(optim, 50) == pytest.approx(0.1)  # restart
    assert schedules.learning_rate(optim, 100) == pytest.approx(0.05)  # second period is 100 epochs
    assert schedules.learning_rate(optim, 150) == pytest.approx(0.1)


# ---- one in-process run (session fixture) --------------------------------------------------------------


def test_run_artifacts(tiny_run):
    names = {p.name for p in tiny_run.iterdir()}
    assert {"last.pt", "best.pt", "metrics.jsonl", "summary.json", "training.png"} <= names
    assert not [n for n in names if n.endswith(".tmp")]
    lines = [json.loads(line) for line in (tiny_run / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == [1, 2]
    for key in ("train_loss", "train_top1", "train_compute_ratio", "temperature", "penalty_weight", "val_top1", "val_skip_rates"):
        assert key in lines[0], key
    assert len(lines[0]["val_skip_rates"]) == 9 and 0 < lines[1]["train_compute_ratio"] <= 1
    assert lines[1]["temperature"] < lines[0]["temperature"]
    state = load_checkpoint(tiny_run / "last.pt")
    for key in ("model", "optimizer", "scheduler", "rng", "config", "epoch"):
        assert key in state, key
    assert state["epoch"] == 1 and state["config"]["model"]["mode"] == "predictive"
    assert {"torch", "numpy", "python"} <= set(state["rng"])
    summary = json.loads((tiny_run / "summary.json").read_text())
    assert summary["final"]["num_images"] == 100  # the test split
    best = summary["best_by_held_out"]
    # selection on the held-out split of the training data: its val_top1 is the best of the epochs' val_top1
    assert best["val_top1"] == max(m["val_top1"] for m in lines)
    assert best["epoch"] == max(lines, key=lambda m: m["val_top1"])["epoch"]
    assert summary["train_images"] == 270  # 300 minus the 10% held-out split


def test_checkpoint_roundtrip(tiny_checkpoint):
    model, state = model_from_checkpoint(tiny_checkpoint)
    assert not model.training and model.backbone == "resnet20" and model.mode == "predictive"
    with pytest.raises(CosineGateError, match="holds a resnet20 but --backbone paper8"):
        model_from_checkpoint(tiny_checkpoint, "paper8")


# ---- deterministic resume (subprocess, kill -9) ----------------------------------------------------------


def _train_cmd(data_root, out, *extra):
    return [
        sys.executable, str(ROOT / "train/train.py"), "--config", "balanced", "--data", "cifar10", "--data-root", str(data_root),
        "--epochs", "3", "--batch-size", "64", "--seed", "1", "--no-progress", "--out", str(out), *extra,
    ]


def test_resume_after_kill_is_bitwise_identical(tmp_path, fake_cifar_root):
    full, killed = tmp_path / "full", tmp_path / "killed"
    env = script_env()
    uninterrupted = subprocess.Popen(_train_cmd(fake_cifar_root, full), cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    victim = subprocess.Popen(_train_cmd(fake_cifar_root, killed), cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 180
        metrics = killed / "metrics.jsonl"
        while time.time() < deadline and victim.poll() is None:
            if metrics.is_file() and len(metrics.read_text().splitlines()) >= 1 and (killed / "last.pt").is_file():
                break
            time.sleep(0.01)
        victim.send_signal(signal.SIGKILL)
        assert victim.wait(30) == -signal.SIGKILL, "the run finished before it could be killed"
    finally:
        if victim.poll() is None:
            victim.kill()
    assert load_checkpoint(killed / "last.pt")["epoch"] < 2
    assert not (killed / "summary.json").exists()
    out, _ = uninterrupted.communicate(timeout=240)
    assert uninterrupted.returncode == 0, out.decode()[-2000:]

    resumed = subprocess.run(_train_cmd(fake_cifar_root, killed, "--resume"), cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = load_checkpoint(full / "last.pt"), load_checkpoint(killed / "last.pt")
    assert a["epoch"] == b["epoch"] == 2
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for pid, sa in a["optimizer"]["state"].items():
        assert torch.equal(sa["momentum_buffer"], b["optimizer"]["state"][pid]["momentum_buffer"])
    la = [json.loads(x) for x in (full / "metrics.jsonl").read_text().splitlines()]
    lb = {json.loads(x)["epoch"]: json.loads(x) for x in (killed / "metrics.jsonl").read_text().splitlines()}
    assert [m["train_loss"] for m in la] == [lb[e]["train_loss"] for e in (1, 2, 3)]
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (full, killed))
    assert sa["final"]["top1"] == sb["final"]["top1"] and sa["final"]["skip_rates"] == sb["final"]["skip_rates"]

    # resuming with another config is refused; a second run into the same folder without --resume too
    other = run_script("train/train.py", *_train_cmd(fake_cifar_root, killed, "--resume", "--lr", "0.05")[2:])
    assert other.returncode == 2 and "another config (optim.lr 0.1 there, 0.05 here)" in other.stderr, other.stderr
    assert "Traceback" not in other.stderr
    again = run_script("train/train.py", *_train_cmd(fake_cifar_root, killed)[2:])
    assert again.returncode == 2 and "already holds a run" in again.stderr and "--resume" in again.stderr
    assert torch.equal(load_checkpoint(killed / "last.pt")["model"]["fc.weight"], b["model"]["fc.weight"])


def test_config_changes_name_each_differing_key_once():
    from cosinegate.training.loop import config_changes

    old = {"optim": {"lr": 0.1, "epochs": 8}, "data": {"subset": 600, "root": None}, "seed": 0}
    new = {"optim": {"lr": 0.1, "epochs": 1}, "data": {"subset": 4000, "root": None}, "seed": 0, "init_from": "t.pt"}
    assert config_changes(old, new) == [("data.subset", 600, 4000), ("init_from", None, "t.pt"), ("optim.epochs", 8, 1)]
    assert config_changes(new, new) == []


def test_resume_without_a_run(tmp_path, fake_cifar_root):
    result = run_script("train/train.py", *_train_cmd(fake_cifar_root, tmp_path / "none", "--resume")[2:])
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error:") and "does not exist" in result.stderr and "without --resume" in result.stderr


# ---- DDP ---------------------------------------------------------------------------------------------------


def test_ddp_two_processes_gloo(tmp_path, fake_cifar_root):
    out = tmp_path / "ddp"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(ROOT / "train/train.py"),
        "--config", "balanced", "--data", "cifar10", "--data-root", str(fake_cifar_root), "--epochs", "1",
        "--batch-size", "64", "--device", "cpu", "--no-progress", "--out", str(out),
    ]
    env = script_env(OMP_NUM_THREADS=1)
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=150)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["train_images"] == 270 and summary["final"]["num_images"] == 100
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1  # written by rank 0 only
    state = load_checkpoint(out / "last.pt")
    assert not any(k.startswith("module.") for k in state["model"])  # the unwrapped model is saved
    assert result.stdout.count("wrote ") == 1


def _any_on_rank(rank, port, results):
    import torch.distributed as dist

    from cosinegate.training.distributed import DistContext

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    context = DistContext(rank, 2)
    results[rank] = (context.any(rank == 1), context.any(False))
    dist.destroy_process_group()


def test_ddp_ranks_agree_on_stopping():
    """--time-limit under torchrun: one rank out of time stops every rank at the same epoch."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    results = mp.Manager().dict()
    mp.spawn(_any_on_rank, args=(port, results), nprocs=2, join=True)
    assert dict(results) == {0: (True, False), 1: (True, False)}


# ---- fine-tuning knobs: gates at a scaled learning rate, Nesterov, label smoothing ----------------------------
def test_gate_lr_scale_puts_the_gates_in_their_own_group():
    from cosinegate.config import load_config, validate
    from cosinegate.training.loop import Trainer

    config = load_config("rates")
    config["data"].update(source="synthetic", subset=64)
    config["optim"].update(gate_lr_scale=5.0, lr=0.02)
    trainer = Trainer(validate(config), tempfile.mkdtemp(), progress=False)
    backbone, gates = trainer.optimizer.param_groups
    gate_params = {id(p) for b in trainer.model.blocks if b.gate is not None for p in b.gate.parameters()}
    assert {id(p) for p in gates["params"]} == gate_params and not gate_params & {id(p) for p in backbone["params"]}
    lr = trainer.set_schedules(3.0)
    assert backbone["lr"] == lr and gates["lr"] == pytest.approx(5.0 * lr)


@pytest.mark.parametrize("key, value, message", [("gate_lr_scale", 0, "gate_lr_scale"), ("label_smoothing", 1.0, "label_smoothing"),
                                                 ("nesterov", "yes", "nesterov")])
def test_fine_tuning_knobs_refuse_values_they_cannot_run_with(key, value, message):
    from cosinegate.config import load_config, validate

    config = load_config("dense")
    config["optim"][key] = value
    with pytest.raises(CosineGateError, match=message):
        validate(config)


# ---- training you can watch: a line per epoch, a data line, a warning when routing is not dynamic ----------------
def test_train_prints_a_line_per_epoch_and_quiet_prints_none(tmp_path, fake_cifar_root):
    common = ["--config", "rates", "--data", "cifar10", "--data-root", fake_cifar_root, "--epochs", "2", "--subset", "60"]
    shown = run_script("train/train.py", *common, "--no-progress", "--out", tmp_path / "shown")
    assert shown.returncode == 0, shown.stderr[-2000:]
    lines = shown.stdout.splitlines()
    assert lines[0].startswith("data cifar10") and "held out" in lines[0] and "test" in lines[0]
    epochs = [line for line in lines if line.startswith("epoch ")]
    metrics = [json.loads(line) for line in (tmp_path / "shown/metrics.jsonl").read_text().splitlines()]
    assert len(epochs) == 2 and all(f"held-out top-1 {m['val_top1'] * 100:5.2f}%" in e and "skip % [" in e
                                    for e, m in zip(epochs, metrics))
    quiet = run_script("train/train.py", *common, "--quiet", "--out", tmp_path / "quiet")
    assert quiet.returncode == 0 and not any(line.startswith(("epoch ", "data ")) for line in quiet.stdout.splitlines())


def test_routing_note_names_a_dense_or_static_outcome():
    from cosinegate.models import CosineGateNet
    from cosinegate.training.loop import routing_note

    gated = CosineGateNet("resnet20", "predictive", ungated_blocks="stage_first")  # gates on blocks 1, 2, 4, 5, 7, 8
    assert routing_note(CosineGateNet("resnet20", "none"), [0.0] * 9) is None
    assert routing_note(gated, [0.0, 0.0, 0.3, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]) is None  # block 2 is dynamic
    assert "no gated block ever skipped" in routing_note(gated, [0.0] * 9)
    assert "blocks [2, 8] are always skipped" in routing_note(gated, [0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0])


def test_read_metrics_keeps_the_last_record_of_each_epoch_and_skips_a_cut_line(tmp_path):
    from cosinegate.training.metrics_log import read_metrics
    path = tmp_path / "metrics.jsonl"
    # epoch 2 logged, killed before last.pt, logged again on resume; a list epoch and a cut last line from a bad file
    path.write_text('{"epoch": 1, "x": 1}\n{"epoch": 2, "x": 2}\n{"epoch": 2, "x": 3}\n{"epoch": [3]}\n{"epoch": 3, "x"')
    assert read_metrics(path) == [{"epoch": 1, "x": 1}, {"epoch": 2, "x": 3}]


def test_a_resume_that_runs_other_numerics_says_so(tmp_path):
    # the campaign's chunks resume with its speed flags; a changed flag would change the numerics silently
    from cosinegate.config import load_config, validate
    from cosinegate.training.loop import train
    from cosinegate.training.runtime import Runtime

    config = load_config("dense")
    config["data"].update(source="synthetic", subset=40)
    config["optim"].update(epochs=2, batch_size=20)
    config = validate(config)
    said = []
    train(config, tmp_path / "run", progress=False, runtime=Runtime(), stop_after=1, log=said.append)
    assert load_checkpoint(tmp_path / "run" / "last.pt")["runtime"] == Runtime().as_dict()
    train(config, tmp_path / "run", resume=True, progress=False, runtime=Runtime(amp="bf16"), log=said.append)
    notes = [line for line in said if line.startswith("note: ") and "is no longer bit-exact" in line]
    assert len(notes) == 1 and "'amp': 'none'" in notes[0] and "'amp': 'bf16'" in notes[0]
    from cosinegate.training.loop import hardware_label
    from cosinegate.training.metrics_log import read_metrics

    epochs = read_metrics(tmp_path / "run" / "metrics.jsonl")  # each epoch says how it ran
    assert [(m["amp"], m["hardware"]) for m in epochs] == [("none", hardware_label("cpu")), ("bf16", hardware_label("cpu"))]
    said.clear()  # the same runtime resumes silently
    train(config, tmp_path / "same", progress=False, runtime=Runtime(), stop_after=1, log=said.append)
    train(config, tmp_path / "same", resume=True, progress=False, runtime=Runtime(), log=said.append)
    assert not [line for line in said if "bit-exact" in line]


@pytest.mark.parametrize("terminal", [True, False])
def test_the_step_bar_shows_on_a_terminal_only(tmp_path, monkeypatch, capsys, terminal):
    """A log file (the embedded default's training inside build-engine, a campaign's train.log) gets the epoch lines,
    not a progress bar's carriage returns."""
    import sys

    from cosinegate.config import load_config, validate
    from cosinegate.training.loop import train
    from cosinegate.training.runtime import Runtime

    monkeypatch.setattr(sys.stderr, "isatty", lambda: terminal)
    config = load_config("dense")
    config["data"].update(source="synthetic", subset=40)
    config["optim"].update(epochs=1, batch_size=20)
    said = []
    train(validate(config), tmp_path / "run", progress=True, runtime=Runtime(), log=said.append)
    assert ("epoch 1/1" in capsys.readouterr().err) is terminal and any(line.startswith("epoch") for line in said)


@pytest.mark.parametrize("native", [True, False])
def test_bf16_on_a_cpu_that_emulates_it_is_named(tmp_path, monkeypatch, native):
    from cosinegate.config import load_config, validate
    from cosinegate.training import loop
    from cosinegate.training.runtime import Runtime

    monkeypatch.setattr(loop, "native_bf16", lambda: native)
    config = load_config("dense")
    config["data"].update(source="synthetic", subset=40)
    config["optim"].update(epochs=1, batch_size=20)
    said = []
    loop.train(validate(config), tmp_path / "run", progress=False, runtime=Runtime(amp="bf16"), log=said.append)
    assert bool([line for line in said if "does not compute bf16 itself" in line]) is not native
