"""Training throughput on the training loop's own step (cosinegate bench-train's table and its concurrency probes).

Each step is exactly the training command's step (cosinegate.training.loop.Trainer.step): the batch gathered from the uint8
images already on the device, crop+flip on the device, forward, the loss with the compute penalties and the CIR term
(gated), backward, gradient clipping and an SGD step, with no host synchronization. On CUDA a sync check runs a few
steps under torch.cuda.set_sync_debug_mode("error") and reports the first synchronizing call, if any.
"""

import json
import time
from pathlib import Path

from cosinegate.errors import CosineGateError

FAST = "bf16+channels_last+fused"  # what cosinegate train --fast runs (on CUDA)
SETTINGS = {  # name -> Runtime fields
    "fp32": {},
    "fp32+channels_last": {"channels_last": True},
    "bf16": {"amp": "bf16"},
    FAST: {"amp": "bf16", "channels_last": True, "fused": True},
    "bf16+channels_last+fused+compile": {"amp": "bf16", "channels_last": True, "fused": True, "compile": True},
}
PRESET_OF_MODE = {"none": "dense", "predictive": "balanced"}


def make_trainer(mode, backbone, device, batch_size, runtime, folder):
    """A Trainer on the embedded synthetic set (a class-balanced subset of 4,096 images), preset dense or balanced,
    with ``folder`` as its run folder (timing steps write nothing there)."""
    from cosinegate.config import load_config, validate
    from cosinegate.training.loop import Trainer

    config = load_config(PRESET_OF_MODE[mode])
    config["model"]["backbone"] = backbone
    config["data"].update(source="synthetic", subset=4096)
    config["optim"]["batch_size"] = batch_size
    return Trainer(validate(config), folder, device, progress=False, runtime=runtime)


def timed_steps(trainer, steps, start_step=0):
    """Run `steps` training steps (the loop's batches of epoch 0); return the device tensor of totals."""
    import torch

    order, augment = trainer.epoch_plan(0)
    batch = trainer.config["optim"]["batch_size"]
    per_epoch = max(1, len(order) // batch)
    totals = torch.zeros(6, dtype=torch.float64, device=trainer.device)
    trainer.net.train()
    for i in range(start_step, start_step + steps):
        k = i % per_epoch
        trainer.set_schedules(0.5)
        trainer.step(order[k * batch:(k + 1) * batch], augment[k * batch:(k + 1) * batch], 0.5, totals)
    return totals


def sync(device):
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def measure(trainer, steps, warmup, repeats):
    """Best wall time per step over `repeats` timed runs of `steps` steps (after `warmup` steps)."""
    timed_steps(trainer, warmup)
    sync(trainer.device)
    best = float("inf")
    for r in range(repeats):
        start = time.perf_counter()
        timed_steps(trainer, steps, warmup + r * steps)
        sync(trainer.device)
        best = min(best, (time.perf_counter() - start) / steps)
    return best


def sync_check(trainer):
    """'none' when three steps run under set_sync_debug_mode('error'), else the error's first line."""
    import torch

    if trainer.device.type != "cuda":
        return "n/a (cpu)"
    timed_steps(trainer, 2)
    sync(trainer.device)
    torch.cuda.set_sync_debug_mode("error")
    try:
        timed_steps(trainer, 3)
        return "none"
    except RuntimeError as exc:
        return str(exc).splitlines()[0][:160]
    finally:
        torch.cuda.set_sync_debug_mode("default")


def setting_names(settings=None, compile=False):
    """The settings to time: ``settings`` (comma-separated names of SETTINGS), else all but compile; ``compile`` adds
    the torch.compile one."""
    names = settings.split(",") if settings else [n for n in SETTINGS if "compile" not in n]
    if compile and not any("compile" in n for n in names):
        names.append("bf16+channels_last+fused+compile")
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        raise CosineGateError(f"unknown --settings {unknown}; choose from {', '.join(SETTINGS)}.")
    return names


def throughput_rows(names, backbone, device, batch_size, steps, warmup, repeats):
    """Per setting and mode (dense "none", gated "predictive"): images/s, ms per step and host syncs, or the error of
    a setting torch cannot run here (e.g. compile without a compiler)."""
    import tempfile

    from cosinegate.training.runtime import Runtime

    if steps < 1 or batch_size < 1 or repeats < 1:
        raise CosineGateError("--steps, --batch-size and --repeats must be at least 1.")
    rows = []
    with tempfile.TemporaryDirectory(prefix="cosinegate-bench-train-") as folder:
        for name in names:
            for mode in ("none", "predictive"):
                trainer = make_trainer(mode, backbone, device, batch_size, Runtime(**SETTINGS[name]), folder)
                try:
                    seconds = measure(trainer, steps, warmup, repeats)
                    syncs = sync_check(trainer)
                except Exception as exc:  # reported in its row, the other settings still timed
                    rows.append({"setting": name, "mode": mode,
                                 "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"})
                    continue
                rows.append({"setting": name, "mode": mode, "images_per_s": batch_size / seconds,
                             "ms_per_step": 1000 * seconds, "host_syncs": syncs})
    return rows


def run_probe(folder, probe_id, mode, backbone, device, setting, batch_size, warmup, seconds):
    """One process of the concurrency probe (research.packing.probe_level starts them): warm up, say ready in
    ``folder``, wait for 'go', train whole steps for at least ``seconds`` and write the images and the seconds they
    took."""
    import torch

    from cosinegate.training.runtime import Runtime

    if batch_size < 1 or warmup < 0 or seconds <= 0:
        raise CosineGateError("a probe needs --batch-size of at least 1, --warmup of 0 or more and --seconds above 0.")
    barrier = Path(folder)
    trainer = make_trainer(mode, backbone, device, batch_size, Runtime(**SETTINGS[setting]), barrier / f"run-{probe_id}")
    timed_steps(trainer, warmup)
    sync(trainer.device)
    (barrier / f"ready-{probe_id}").write_text("ready")
    while not (barrier / "go").exists():
        time.sleep(0.02)
    start = float((barrier / "go").read_text())
    while time.time() < start:
        time.sleep(0.001)
    images, step = 0, warmup
    chunk = 10 if trainer.device.type == "cuda" else 1  # steps between synchronizations
    while True:  # whole steps until the window has passed: a step longer than the window counts, with its time
        timed_steps(trainer, chunk, step)
        sync(trainer.device)
        step += chunk
        images += chunk * batch_size
        if time.time() >= start + seconds:
            break
    memory = torch.cuda.max_memory_allocated() if trainer.device.type == "cuda" else 0
    (barrier / f"result-{probe_id}.json").write_text(json.dumps({"images": images, "seconds": time.time() - start,
                                                                 "memory": memory}))
