"""One GPU run of the training campaign (at most --budget seconds), continuing from the previous run's state.

    # on the desktop, once: the CIFAR-10 JPEG folder as a tar under the ignored .campaign/ folder
    cosinegate campaign --make-tar ROOT .campaign/cifar10-jpeg.tar.gz
    # on the GPU machine (with the checkout and .campaign/ copied there), once per GPU run:
    python3 -m cosinegate.cli.campaign --device cuda --data-tar .campaign/cifar10-jpeg.tar.gz --state .campaign/state --out OUT
    # on the desktop, after each GPU run: OUT copied back as RETURNED; its state for the next run, its results
    cosinegate campaign --absorb RETURNED --results train/results/cifar10-campaign-h200

It unpacks the data and the state, measures training throughput (bench.txt, first run only) and the best
number of concurrent runs (first run only), trains the planned runs in priority order with a deadline
(each run stops cleanly after its last whole epoch), and writes to --out at most 8 files: results.md,
results.json, pareto.png, campaign.json, bench.txt, state-N.tar (to carry to the next run) and
finals-1.tar (model-only checkpoints of the runs that finished). --tiny is the CPU dry-run size.
(cosinegate/research/campaign_run.py)
"""

import argparse
import os
import signal
import sys


def parse_args(argv):
    from cosinegate.cli.args import ArgumentParser, HelpFormatter, add_device_flags, add_output_flag, add_report_flags, add_version_flag

    parser = ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--make-tar", nargs=2, metavar=("JPEG_FOLDER", "TAR"), help="on the desktop, before the first GPU run: tar the CIFAR-10 JPEG folder")
    parser.add_argument("--per-class", type=int, help="with --make-tar: only N images per class and split (dry runs)")
    parser.add_argument("--absorb", metavar="RETURNED", help="on the desktop, after a GPU run: take the folder its --out was copied back to")
    parser.add_argument("--results", default="train/results/cifar10-campaign-h200", help="with --absorb: where the tables go")
    parser.add_argument("--carry", default=".campaign/state", help="with --absorb: where the state for the next run goes")
    add_device_flags(parser, device="cuda")
    parser.add_argument("--data-tar", default=".campaign/cifar10-jpeg.tar.gz", help="the CIFAR-10 JPEG tar (--make-tar)")
    parser.add_argument("--state", help="folder with the previous run's state-*.tar (absent: a fresh campaign)")
    add_output_flag(parser, "where the GPU run writes the files to bring back (default: the OUT environment variable)", default=os.environ.get("OUT"))
    parser.add_argument("--budget", type=float, default=540, help="seconds for the whole GPU run (unpacking to packing)")
    parser.add_argument("--epochs", type=int, default=160, help="training epochs of every run")
    parser.add_argument("--seeds", type=int, default=2, help="seeds per configuration")
    parser.add_argument("--subset", type=int, help="class-balanced training subset (dry runs)")
    parser.add_argument("--jobs", default="auto", help="concurrent runs, or auto (measured once, kept in the state)")
    parser.add_argument("--jobs-levels", default="1,4,8,12", help="concurrency levels --jobs auto measures (first run only)")
    parser.add_argument("--bench-steps", type=int, default=30, help="timed steps of the throughput probe (bench_train)")
    parser.add_argument("--compile", action="store_true", help="also torch.compile every run (if bench.txt shows it pays)")
    parser.add_argument("--tiny", action="store_true", help="CPU dry-run size: 2 epochs, 1 seed, 600 images, 2 stages")
    add_report_flags(parser, "this job's report (the campaign run: campaign.json's content; --make-tar: the tar's image "
                             "count and size; --absorb: where the files went)")
    parser.add_argument("--work", help=argparse.SUPPRESS)  # default: campaign_run.WORK
    add_version_flag(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from dataclasses import asdict

    from cosinegate.research import campaign_run

    if args.make_tar:
        from cosinegate.research.campaign import make_data_tar

        count, size = make_data_tar(*args.make_tar, per_class=args.per_class)
        print(f"wrote {args.make_tar[1]}: {count} images, {size / 2**20:.1f} MiB")
        report = {"tar": args.make_tar[1], "source": args.make_tar[0], "images": count, "bytes": size}
    elif args.absorb:
        done = campaign_run.absorb(args.absorb, args.results, args.carry)
        print(f"state for the next GPU run: {done.carry} ({done.states} tars); finals: {done.finals}; "
              f"results: {done.results}")
        report = {"absorbed": done.source, **{k: v for k, v in asdict(done).items() if k != "source"}}
    else:
        from cosinegate.cli import pick_device
        from cosinegate.errors import CosineGateError

        if not args.out:
            raise CosineGateError("--out is needed (on the device machine it defaults to $OUT).")
        settings = campaign_run.RunSettings(
            out=args.out, data_tar=args.data_tar, state=args.state, device=pick_device(args.device), budget=args.budget,
            epochs=args.epochs, seeds=args.seeds, subset=args.subset, jobs=args.jobs, jobs_levels=args.jobs_levels,
            bench_steps=args.bench_steps, compile=args.compile, tiny=args.tiny, work=args.work or str(campaign_run.WORK))
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `timeout` also stops the runs in flight
        result = campaign_run.run_on_device(settings, log=lambda text: print(text, flush=True))
        print(f"wrote {', '.join(result.files)} to {args.out}")
        report = {k: v for k, v in asdict(result).items() if k != "files"}
    if args.json:
        from cosinegate.artifacts import atomic_write_json

        atomic_write_json(args.json, report)
    return 0


if __name__ == "__main__":
    from cosinegate.cli import run_main

    run_main(main)
