#!/usr/bin/env python
"""Continue issue 21's CPU campaign from its committed state, until done or until the time limit.

    # from the repository root, in the background, while other work goes on:
    nice python train/cpu_campaign.py --time-limit 9000 > .campaign/cpu.log 2>&1 &
    # then commit train/results/cifar10-campaign-cpu/ (the state, the table, the plot)
    python train/cpu_campaign.py --report      # only regenerate results.md, results.json, pareto.png

Each run is a train/train.py subprocess (one thread, bf16 autocast); a run still going at the limit stops
after its last whole epoch and continues bit-exact (train.py --resume) the next time. See
cosinegate/research/cpu_campaign.py for the protocol.
"""

import _bootstrap  # noqa: F401
from cosinegate.cli import run_main
from cosinegate.cli.cpu_campaign import main

if __name__ == "__main__":
    run_main(main)
