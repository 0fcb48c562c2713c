#!/usr/bin/env python
"""One GPU run of the issue-16 campaign (at most --budget seconds), continuing from the previous run's state.

    # here, once (run-prep): the CIFAR-10 JPEG folder as a tar under the ignored .campaign/ folder
    python train/campaign.py --make-tar ../shared/data/cifar10-jpeg .campaign/cifar10-jpeg.tar.gz
    # on the GPU machine (device tool, carry [".campaign"]), once per GPU run:
    python3 train/campaign.py --device cuda --data-tar .campaign/cifar10-jpeg.tar.gz --state .campaign/state --out $OUT
    # here, after each GPU run: the returned state for the next run, the results into train/results/
    python train/campaign.py --absorb FILES_AT --results train/results/cifar10-campaign-h200

It unpacks the data and the state, measures training throughput (bench.txt, first run only) and the best
number of concurrent runs (first run only), trains the planned runs in priority order with a deadline
(each run stops cleanly after its last whole epoch), and writes to --out at most 8 files: results.md,
results.json, pareto.png, campaign.json, bench.txt, state-N.tar (to carry to the next run) and
finals-1.tar (model-only checkpoints of the runs that finished). --tiny is the CPU dry-run size.
"""

import _bootstrap  # noqa: F401
from cosinegate.cli import run_main
from cosinegate.cli.campaign import main

if __name__ == "__main__":
    run_main(main)
