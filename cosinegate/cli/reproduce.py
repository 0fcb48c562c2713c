"""Reproduce the paper's CIFAR-10 table with one recipe for every contender, executed MACs and a Pareto plot.

    cosinegate reproduce --data imagefolder --data-root ROOT \\
        --backbones resnet20,resnet56 --epochs 30 --device cuda --jobs 6 --out train/results

    # gated presets against a static curve (1..3 blocks removed) at equal MACs
    cosinegate reproduce --presets dense,static,balanced,balanced-floor --static-curve 3 ...

    # the gate methods on a GPU: fast path, as many runs at once as raise throughput, stop cleanly after 9 minutes
    cosinegate reproduce --presets dense,rates,shaping,two-phase --device cuda --fast --jobs auto --time-limit 540 ...

Each run lives in OUT/runs/<backbone>-<preset>-s<seed>/; finished runs are skipped,
interrupted ones resumed (also across machines: rerun the same command to continue).
Writes OUT/results.md, OUT/results.json and OUT/pareto.png.
"""

import signal
import sys
from pathlib import Path


def main(argv=None):
    from cosinegate.artifacts import atomic_write_json
    from cosinegate.cli import pick_device
    from cosinegate.cli.args import (ArgumentParser, HelpFormatter, add_data_flags, add_device_flags, add_output_flag, add_report_flags,
                                     add_version_flag, nonnegative_int, positive_float, positive_int)
    from cosinegate.errors import CosineGateError
    from cosinegate.research.experiments import PRESETS

    parser = ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    add_data_flags(parser, default="synthetic", source="synthetic", image_size=False)
    parser.add_argument("--backbones", default="resnet20", help="comma-separated, e.g. resnet20,resnet56")
    parser.add_argument("--presets", default=",".join(PRESETS), help=f"comma-separated subset of {','.join(PRESETS)}")
    parser.add_argument("--static-curve", type=nonnegative_int, default=0, metavar="K",
                        help="also train static baselines with 1..K blocks removed (static-d1..static-dK): the static "
                             "curve each gated run is compared with at its own executed MACs")
    parser.add_argument("--epochs", type=positive_int, default=30, help="training epochs of every run")
    parser.add_argument("--seeds", type=positive_int, default=1, help="seeds per configuration (0..N-1)")
    add_device_flags(parser)
    parser.add_argument("--finetune-epochs", type=positive_int, help="two-phase: epochs of the gated fine-tuning (default epochs // 4)")
    parser.add_argument("--jobs", default="1", help="runs trained at the same time (several fit on one GPU), or 'auto': "
                                                    "measure aggregate images/s at --jobs-levels and take the best (kept in "
                                                    "OUT/concurrency.json for this device and setting)")
    parser.add_argument("--jobs-levels", default="1,2,4,8,12", help="concurrency levels --jobs auto tries")
    speed = parser.add_argument_group("speed (passed to every training run)")
    speed.add_argument("--fast", action="store_true", help="on CUDA: bf16 autocast, channels_last, fused SGD")
    speed.add_argument("--compile", action="store_true", help="torch.compile the forward and loss")
    parser.add_argument("--time-limit", type=positive_float, metavar="SECONDS", help="stop every run cleanly after its last epoch "
                        "that fits in SECONDS from now (partial runs continue on the next invocation)")
    add_output_flag(parser, "folder of the runs (OUT/runs/<run>/) and the results", default="runs/reproduce")
    parser.add_argument("--collect-only", action="store_true", help="train nothing; tabulate the runs that finished")
    add_report_flags(parser, "results.json")
    add_version_flag(parser)
    args = parser.parse_args(argv)
    from cosinegate.research.reproduce import reproduce  # torch: after parsing, so --help needs no torch

    device = pick_device(args.device)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `timeout` also stops the runs in flight
    result = reproduce(args.out, backbones=[b.strip() for b in args.backbones.split(",")],
                       presets=[p.strip() for p in args.presets.split(",")], seeds=args.seeds, epochs=args.epochs,
                       data=args.data, data_root=args.data_root, subset=args.subset, static_curve=args.static_curve,
                       finetune_epochs=args.finetune_epochs, device=device, jobs=args.jobs, jobs_levels=args.jobs_levels,
                       fast=args.fast, compile=args.compile, time_limit=args.time_limit, collect_only=args.collect_only)
    if result.results is None:
        return 0
    if args.json:
        atomic_write_json(args.json, result.results)
    print((Path(args.out) / "results.md").read_text())
    print(f"wrote {args.out}/results.md, results.json, pareto.png")
    if result.failed:
        raise CosineGateError(f"runs failed: {', '.join(result.failed)}; see their train.log, fix, and rerun (finished "
                              "runs are kept).")


if __name__ == "__main__":
    from cosinegate.cli import run_main

    run_main(main)
