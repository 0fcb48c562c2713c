"""Continue the CPU training campaigns (docs/results.md) from their committed state, until done or the time limit.

    # from the repository root, in the background, while other work goes on:
    mkdir -p .campaign && nice cosinegate cpu-campaign --time-limit 9000 > .campaign/cpu.log 2>&1 &
    # the state, the table and the plot are in train/results/cifar10-campaign-cpu*/ (commit them to continue elsewhere)
    cosinegate cpu-campaign --report      # only regenerate results.md, results.json, pareto.png
    cosinegate cpu-campaign --check-winner  # the deployment goal on the leading gated run (a few minutes)

Two campaigns share the slots: ResNet-20 (cifar10-campaign-cpu/) first, then the ResNet-56-vs-ResNet-32
fallback (cifar10-campaign-cpu-r56/), every control last. Each run is a cosinegate train subprocess (one thread,
bf16 autocast); a run still going at the limit stops after its last whole epoch and continues bit-exact
(cosinegate train --resume) the next time. See cosinegate/research/cpu_campaign/plan.py for the protocols.
"""

import signal
import sys
import time


def parse_args(argv=None):
    from cosinegate.cli.args import (ArgumentParser, HelpFormatter, add_device_flags, add_report_flags, add_version_flag, positive_float,
                                     positive_int)

    parser = ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--folder", action="append", metavar="DIR",
                        help="a campaign's state and results (repeat for several, which share the --jobs slots in this "
                             "order; default: train/results/cifar10-campaign-cpu then train/results/cifar10-campaign-cpu-r56, "
                             "research/cpu_campaign/chunk.py's CAMPAIGNS); a new folder starts with the default protocol "
                             "(training only: --report and --check-winner need a campaign's state)")
    parser.add_argument("--time-limit", type=positive_float, metavar="SECONDS", help="stop cleanly before this many seconds")
    parser.add_argument("--jobs", type=positive_int, default=2, help="runs at once (default 2: one per core)")
    add_device_flags(parser, threads=1, note="each run is one process")
    parser.add_argument("--report", action="store_true", help="only regenerate the results from the state")
    parser.add_argument("--check-winner", action="store_true",
                        help="no training: export the leading gated run with --policy auto, check parity on the whole test "
                             "split and its INT8 Q/DQ graph (winner-check.json), then regenerate the results")
    add_report_flags(parser, '{"chunk": {"finished", "stopped", "failed": [run names], "seconds"} (null with --report '
                     'or --check-winner), and per campaign folder {"progress": {run: {"state", "epochs_done", "epochs", '
                     '"hours_left", and "failed": {"exit", "at"} after a failure}}, "goals": {goal: status}}')
    add_version_flag(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from pathlib import Path

    from cosinegate.research.cpu_campaign.chunk import run_chunk  # torch loads in it, after the folders are checked

    log = lambda text: print(time.strftime("%H:%M:%S"), text, flush=True)  # noqa: E731
    train = not (args.report or args.check_winner)
    if train:  # `kill` (the way a background campaign is stopped) unwinds like Ctrl-C: its runs stop, their state is kept
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    deadline = time.time() + args.time_limit if args.time_limit else None
    chunk = run_chunk(args.folder, deadline, train=train, check=args.check_winner, jobs=args.jobs, threads=args.threads,
                      device=args.device, log=log)
    for folder, record in chunk.checks.items():
        if record is None:
            print(f"{folder}: no gated contender has finished yet; nothing to check")
        else:
            print(f"{record['run']}: deployment goal {'met' if record['met'] else 'not met'}"
                  + (f" ({record['why']})" if record["why"] else "") + f"; wrote {folder}/winner-check.json")
    result = chunk.trained
    if result:
        print(f"finished {len(result.finished)}, stopped at the limit {len(result.stopped)}, failed {len(result.failed)} "
              f"in {result.seconds / 60:.0f} min")
    for folder in chunk.results:
        plot = ", pareto.png" if (Path(folder) / "pareto.png").is_file() else " (no plot: no run has finished)"
        print(f"wrote {folder}/results.md, results.json{plot}")
    if args.json:
        from cosinegate.artifacts import atomic_write_json

        atomic_write_json(args.json, chunk.summary())
    if result and result.failed:
        print(f"error: {', '.join(result.failed)} failed; see each run's train.log (the results list them)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    from cosinegate.cli import run_main

    run_main(main)
