"""Continue issue 21's CPU campaign from its committed state, until done or until the time limit.

    # from the repository root, in the background, while other work goes on:
    nice python train/cpu_campaign.py --time-limit 9000 > .campaign/cpu.log 2>&1 &
    # then commit train/results/cifar10-campaign-cpu/ (the state, the table, the plot)
    python train/cpu_campaign.py --report      # only regenerate results.md, results.json, pareto.png

Each run is a train/train.py subprocess (one thread, bf16 autocast); a run still going at the limit stops
after its last whole epoch and continues bit-exact (train.py --resume) the next time. See
cosinegate/research/cpu_campaign.py for the protocol.
"""

import argparse
import time

DEFAULT_FOLDER = "train/results/cifar10-campaign-cpu"


def parse_args(argv=None):
    from cosinegate.cli.args import (HelpFormatter, add_device_flags, add_report_flags, add_version_flag, positive_float,
                                     positive_int)

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--folder", default=DEFAULT_FOLDER, help="the campaign's state and results")
    parser.add_argument("--time-limit", type=positive_float, metavar="SECONDS", help="stop cleanly before this many seconds")
    parser.add_argument("--jobs", type=positive_int, default=2, help="runs at once (default 2: one per core)")
    add_device_flags(parser, threads=1, note="each run is one process")
    parser.add_argument("--report", action="store_true", help="only regenerate the results from the state")
    add_report_flags(parser, "what this chunk did (finished, stopped, failed runs) and the campaign's progress and goals")
    add_version_flag(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)

    import torch  # after the parsing: --help works on the base install

    from cosinegate.research.cpu_campaign import continue_campaign, load_protocol, write_report

    torch.set_num_threads(args.threads)
    load_protocol(args.folder)
    result = None
    if not args.report:
        deadline = time.time() + (args.time_limit or float("inf"))
        log = lambda text: print(time.strftime("%H:%M:%S"), text, flush=True)  # noqa: E731
        result = continue_campaign(args.folder, deadline, jobs=args.jobs, threads=args.threads, device=args.device, log=log)
        print(f"finished {len(result.finished)}, stopped at the limit {len(result.stopped)}, failed {len(result.failed)} "
              f"in {result.seconds / 60:.0f} min")
    write_report(args.folder)
    print(f"wrote {args.folder}/results.md, results.json, pareto.png")
    if args.json:
        import json
        from pathlib import Path

        from cosinegate.artifacts import atomic_write_json

        report = json.loads((Path(args.folder) / "results.json").read_text())
        chunk = {"finished": result.finished, "stopped": result.stopped, "failed": result.failed,
                 "seconds": result.seconds} if result else None
        atomic_write_json(args.json, {"chunk": chunk, "progress": report["progress"], "goals": report["goals"]})


if __name__ == "__main__":
    from cosinegate.cli import run_main

    run_main(main)
