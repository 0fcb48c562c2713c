"""Training throughput (images/s), dense vs gated, for each speed setting of train/train.py.

    python train/bench_train.py --device cuda                  # every setting, dense and gated, sync check
    python train/bench_train.py --device cpu --steps 5         # the CPU dry-run
    python train/bench_train.py --device cuda --backbone resnet56 --compile

Each step is exactly train/train.py's step (cosinegate.training.loop.Trainer.step): the batch gathered
from the uint8 images already on the device, crop+flip on the device, forward, the loss with the
compute penalties and the CIR term (gated), backward, gradient clipping and an SGD step, with no host
synchronization. On CUDA a sync check (always) runs a few steps under
torch.cuda.set_sync_debug_mode("error") and reports the first synchronizing call, if any.
--probe is what `train/reproduce.py --jobs auto` runs in several processes at once to measure the
aggregate throughput against the number of concurrent runs.
"""

import argparse
import json
import time
from pathlib import Path

SETTINGS = {  # name -> Runtime fields
    "fp32": {},
    "fp32+channels_last": {"channels_last": True},
    "bf16": {"amp": "bf16"},
    "bf16+channels_last+fused": {"amp": "bf16", "channels_last": True, "fused": True},
    "bf16+channels_last+fused+compile": {"amp": "bf16", "channels_last": True, "fused": True, "compile": True},
}
PRESET_OF_MODE = {"none": "dense", "predictive": "balanced"}


def make_trainer(mode, backbone, device, batch_size, runtime, images=4096, folder=None):
    """A Trainer on the embedded synthetic set (a class-balanced subset), preset dense or balanced."""
    import tempfile

    from cosinegate.config import load_config, validate
    from cosinegate.training.loop import Trainer

    config = load_config(PRESET_OF_MODE[mode])
    config["model"]["backbone"] = backbone
    config["data"].update(source="synthetic", subset=images)
    config["optim"]["batch_size"] = batch_size
    return Trainer(validate(config), folder or tempfile.mkdtemp(prefix="bench-train-"), device, progress=False, runtime=runtime)


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


def probe(args):
    """One process of the concurrency probe: warm up, say ready, wait for 'go', train whole steps for at least --seconds
    and report the images and the seconds they took."""
    import torch

    from cosinegate.training.runtime import Runtime

    barrier = Path(args.probe)
    runtime = Runtime(**SETTINGS[args.settings.split(",")[0]])
    trainer = make_trainer(args.probe_mode, args.backbone, args.device, args.batch_size, runtime)
    timed_steps(trainer, args.warmup)
    sync(trainer.device)
    (barrier / f"ready-{args.probe_id}").write_text("ready")
    while not (barrier / "go").exists():
        time.sleep(0.02)
    start = float((barrier / "go").read_text())
    while time.time() < start:
        time.sleep(0.001)
    images, step = 0, args.warmup
    chunk = 10 if trainer.device.type == "cuda" else 1  # steps between synchronizations
    while True:  # whole steps until the window has passed: a step longer than the window counts, with its time
        timed_steps(trainer, chunk, step)
        sync(trainer.device)
        step += chunk
        images += chunk * args.batch_size
        if time.time() >= start + args.seconds:
            break
    (barrier / f"result-{args.probe_id}.json").write_text(json.dumps({"images": images, "seconds": time.time() - start,
                                                                       "memory": torch.cuda.max_memory_allocated() if trainer.device.type == "cuda" else 0}))


def main(argv=None):
    from cosinegate.cli import pick_device
    from cosinegate.cli.args import HelpFormatter, add_version_flag
    from cosinegate.errors import CosineGateError

    from cosinegate.cli.args import add_device_flags, add_report_flags

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    add_device_flags(parser, threads=0)
    parser.add_argument("--backbone", default="resnet20", help="backbone timed")
    parser.add_argument("--batch-size", type=int, default=128, help="images per training step")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per setting")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps before them")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per setting; the best is kept")
    parser.add_argument("--settings", help=f"comma-separated subset of {','.join(SETTINGS)} (default: all but compile; "
                                           "on a CPU fp32, fp32+channels_last, bf16)")
    parser.add_argument("--compile", action="store_true", help="add the torch.compile setting")
    add_report_flags(parser, "the table (a row per setting and mode) and the --concurrency measurements")
    add_version_flag(parser)
    parser.add_argument("--concurrency", metavar="JOBSxTHREADS,...", help="also measure the aggregate images/s of "
                        "concurrent runs, e.g. 1x2,2x1 (one 2-thread run against two 1-thread runs), dense and gated, "
                        "at the first --settings")
    parser.add_argument("--probe", metavar="DIR", help=argparse.SUPPRESS)
    parser.add_argument("--probe-mode", default="predictive", choices=("none", "predictive"), help=argparse.SUPPRESS)
    parser.add_argument("--probe-id", default="0", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=8.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    import torch  # after the parsing: --help works on the base install

    from cosinegate.training.loop import hardware_label
    from cosinegate.training.runtime import Runtime

    device = pick_device(args.device)
    if args.steps < 1 or args.batch_size < 1 or args.repeats < 1:
        raise CosineGateError("--steps, --batch-size and --repeats must be at least 1.")
    if args.concurrency:
        parse_concurrency(args.concurrency)  # refused before anything is measured
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.probe:
        args.settings = args.settings or "fp32"
        return probe(args)
    names = args.settings.split(",") if args.settings else [n for n in SETTINGS if "compile" not in n]
    if args.compile and not any("compile" in n for n in names):
        names.append("bf16+channels_last+fused+compile")
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        raise CosineGateError(f"unknown --settings {unknown}; choose from {', '.join(SETTINGS)}.")
    rows = []
    for name in names:
        for mode in ("none", "predictive"):
            trainer = make_trainer(mode, args.backbone, device, args.batch_size, Runtime(**SETTINGS[name]))
            try:
                seconds = measure(trainer, args.steps, args.warmup, args.repeats)
                syncs = sync_check(trainer)
            except Exception as exc:  # a setting torch cannot run here (e.g. compile without a compiler) is reported
                rows.append({"setting": name, "mode": mode, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"})
                continue
            rows.append({"setting": name, "mode": mode, "images_per_s": args.batch_size / seconds, "ms_per_step": 1000 * seconds,
                         "host_syncs": syncs})
    print(f"training throughput, {args.backbone}, batch {args.batch_size}, {args.steps} steps x {args.repeats} (best), "
          f"{hardware_label(device)}, torch {torch.__version__}")
    print(f"{'setting':<34}{'dense img/s':>13}{'gated img/s':>13}{'gated/dense time':>18}  host syncs in a step (dense / gated)")
    for name in names:
        dense, gated = (next(r for r in rows if r["setting"] == name and r["mode"] == m) for m in ("none", "predictive"))
        if "error" in dense or "error" in gated:
            print(f"{name:<34}  failed: {dense.get('error') or gated.get('error')}")
            continue
        ratio = dense["images_per_s"] / gated["images_per_s"]
        print(f"{name:<34}{dense['images_per_s']:>13.0f}{gated['images_per_s']:>13.0f}{ratio:>17.2f}x  "
              f"{dense['host_syncs']} / {gated['host_syncs']}")
    epoch_images = 45_000
    best = max((r for r in rows if r.get("mode") == "none" and "error" not in r), key=lambda r: r["images_per_s"], default=None)
    if best:
        print(f"at the best dense setting ({best['setting']}): a 160-epoch run over {epoch_images} images would take "
              f"{160 * epoch_images / best['images_per_s'] / 60:.1f} min of training steps (evaluation not counted)")
    levels = concurrency(args, names[0]) if args.concurrency else []
    if args.json:
        from cosinegate.artifacts import atomic_write_json

        atomic_write_json(args.json, {"backbone": args.backbone, "batch_size": args.batch_size, "hardware": hardware_label(device),
                                      "torch": torch.__version__, "rows": rows, "concurrency": levels})


def parse_concurrency(text):
    """'1x2,2x1' -> [(1, 2), (2, 1)] (jobs, threads)."""
    from cosinegate.errors import CosineGateError

    try:
        specs = [tuple(int(n) for n in spec.lower().split("x")) for spec in text.split(",")]
    except ValueError:
        specs = []
    if not specs or not all(len(s) == 2 and min(s) >= 1 for s in specs):
        raise CosineGateError(f"--concurrency {text!r}: give JOBSxTHREADS pairs, e.g. 1x2,2x1.")
    return specs


def concurrency(args, setting):
    """Aggregate images/s of JOBS concurrent probe processes with THREADS threads each, dense and gated; prints a table."""
    from cosinegate.research.packing import probe_level

    rows = []
    for jobs, threads in parse_concurrency(args.concurrency):
        row = {"jobs": jobs, "threads": threads}
        for mode in ("none", "predictive"):
            level = probe_level(jobs, str(args.device), args.backbone, setting, args.seconds,
                                args.batch_size, extra=["--threads", str(threads), "--probe-mode", mode, "--warmup", str(args.warmup)])
            row[mode] = level["images_per_s"]
        rows.append(row)
    print(f"\nconcurrent runs ({setting}, {args.seconds:.0f} s window each; images/s summed over the runs)")
    print(f"{'runs x threads':<16}{'dense img/s':>13}{'gated img/s':>13}")
    for r in rows:
        print(f"{r['jobs']}x{r['threads']:<14}{r['none']:>13.0f}{r['predictive']:>13.0f}")
    return rows


if __name__ == "__main__":
    from cosinegate.cli import run_main

    run_main(main)
