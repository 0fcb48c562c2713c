"""Training throughput (images/s), dense vs gated, for each speed setting of cosinegate train.

    cosinegate bench-train --device cuda                  # every setting, dense and gated, sync check
    cosinegate bench-train --device cpu --steps 5         # the CPU dry-run
    cosinegate bench-train --device cuda --backbone resnet56 --compile

Each step is exactly the training command's step, with no host synchronization (cosinegate.training.throughput); on
CUDA a sync check reports the first synchronizing call, if any.
"""

import argparse

from cosinegate.training.throughput import SETTINGS


def main(argv=None):
    from cosinegate.cli import pick_device
    from cosinegate.cli.args import ArgumentParser, HelpFormatter, add_device_flags, add_report_flags, add_version_flag
    from cosinegate.models.backbones import BACKBONES

    parser = ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    add_device_flags(parser, threads=0)
    parser.add_argument("--backbone", default="resnet20", choices=BACKBONES, metavar="NAME",
                        help=f"backbone timed: {', '.join(BACKBONES)}")
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
    # --probe*: what `cosinegate reproduce --jobs auto` runs in several processes at once to measure the aggregate
    # throughput against the number of concurrent runs (not for users: hidden from --help)
    parser.add_argument("--probe", metavar="DIR", help=argparse.SUPPRESS)
    parser.add_argument("--probe-mode", default="predictive", choices=("none", "predictive"), help=argparse.SUPPRESS)
    parser.add_argument("--probe-id", default="0", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=8.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    from cosinegate.research.packing import parse_concurrency
    from cosinegate.research.train_speed import measure
    from cosinegate.training import throughput

    device = pick_device(args.device, args.threads)
    specs = parse_concurrency(args.concurrency) if args.concurrency else []  # refused before anything is measured
    if args.probe:
        return throughput.run_probe(args.probe, args.probe_id, args.probe_mode, args.backbone, device,
                                    (args.settings or "fp32").split(",")[0], args.batch_size, args.warmup, args.seconds)
    speed = measure(device, args.settings, args.compile, args.backbone, args.batch_size, args.steps, args.warmup,
                    args.repeats, specs, args.seconds, device_name=str(args.device), log=print)  # prints each table
    if args.json:
        from cosinegate.artifacts import atomic_write_json

        atomic_write_json(args.json, speed.record())


if __name__ == "__main__":
    from cosinegate.cli import run_main

    run_main(main)
