#!/usr/bin/env python
"""Reproduce the paper's CIFAR-10 table honestly: same recipe, real executed MACs, Pareto plot.

    python train/reproduce.py --data imagefolder --data-root ../shared/data/cifar10-jpeg \\
        --backbones resnet20,resnet56 --epochs 30 --device cuda --jobs 6 --out train/results

    # issue 7: gated presets against a static curve (1..3 blocks removed) at equal MACs
    python train/reproduce.py --presets dense,static,balanced,balanced-floor --static-curve 3 ...

Each run lives in OUT/runs/<backbone>-<preset>-s<seed>/; finished runs are skipped,
interrupted ones resumed. Writes OUT/results.md, OUT/results.json and OUT/pareto.png.
"""

import argparse
import signal
import sys
import time
from pathlib import Path

import _bootstrap  # noqa: F401

HERE = Path(__file__).resolve().parent


def main(argv=None):
    from cosinegate.artifacts import atomic_write_json, atomic_write_text
    from cosinegate.cli import pick_device
    from cosinegate.errors import CosineGateError
    from cosinegate.experiments import PRESETS, collect, pareto_plot, plan_runs, results_markdown, run_state

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="synthetic", choices=("synthetic", "cifar10", "imagefolder"))
    parser.add_argument("--data-root")
    parser.add_argument("--subset", type=int, help="train on a class-balanced subset (quick checks only)")
    parser.add_argument("--backbones", default="resnet20", help="comma-separated, e.g. resnet20,resnet56")
    parser.add_argument("--presets", default=",".join(PRESETS), help=f"comma-separated subset of {','.join(PRESETS)}")
    parser.add_argument("--static-curve", type=int, default=0, metavar="K",
                        help="also train static baselines with 1..K blocks removed (static-d1..static-dK): the static "
                             "curve each gated run is compared with at its own executed MACs")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at the same time (several fit on one GPU)")
    parser.add_argument("--out", default="runs/reproduce")
    parser.add_argument("--collect-only", action="store_true", help="train nothing; tabulate the runs that finished")
    args = parser.parse_args(argv)

    device = pick_device(args.device)
    runs = plan_runs([b.strip() for b in args.backbones.split(",")], [p.strip() for p in args.presets.split(",")],
                     args.seeds, args.epochs, args.data, args.data_root, args.subset, args.static_curve)
    out = Path(args.out)
    pending = [r for r in runs if run_state(out / "runs" / r.name) != "done"]
    print(f"{len(runs)} runs planned, {len(runs) - len(pending)} already finished, {len(pending)} to train on {device}")
    failed = [] if args.collect_only else _run_all(pending, out, device, max(1, args.jobs))
    rows = collect(out, runs)
    if not rows:
        raise CosineGateError(f"no run finished; see the train.log files under {out / 'runs'}.")
    hardware = sorted({r["hardware"] for r in rows})
    note = (f"Schedule: {args.epochs} epochs, cosine LR 0.1, batch 128, SGD momentum 0.9, wd 5e-4; "
            f"data: {args.data}{' subset ' + str(args.subset) if args.subset else ''}; hardware: {', '.join(hardware)}; "
            f"seeds: {args.seeds}.")
    atomic_write_json(out / "results.json", {"note": note, "rows": rows, "failed": failed})
    atomic_write_text(out / "results.md", results_markdown(rows, note))
    title = f"{'CIFAR-10 (' + args.data + ')' if args.data != 'synthetic' else 'synthetic data'}, {args.epochs} epochs"
    pareto_plot(rows, out / "pareto.png", title, paper_points=args.data != "synthetic")
    print((out / "results.md").read_text())
    print(f"wrote {out}/results.md, results.json, pareto.png")
    if failed:
        raise CosineGateError(f"runs failed: {', '.join(failed)}; see their train.log, fix, and rerun (finished runs are kept).")


def _run_all(pending, out, device, jobs):
    """Train pending runs, `jobs` at a time, with a tqdm bar over runs; return failed names."""
    from tqdm import tqdm

    from cosinegate.experiments import launch

    queue, active, failed = list(pending), {}, []
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `timeout` also stops the runs in flight
    with tqdm(total=len(pending), desc="runs", unit="run") as bar:
        try:
            while queue or active:
                while queue and len(active) < jobs:
                    run = queue.pop(0)
                    active[run.name] = launch(run, out, device, HERE / "train.py")
                for name, proc in list(active.items()):
                    if proc.poll() is not None:
                        if proc.returncode != 0:
                            failed.append(name)
                        del active[name]
                        bar.update(1)
                time.sleep(0.5)
        finally:
            for proc in active.values():
                proc.terminate()
    return failed


if __name__ == "__main__":
    from cosinegate.cli import run_main

    run_main(main)
