#!/usr/bin/env python
"""Reproduce the paper's CIFAR-10 table honestly: same recipe, real executed MACs, Pareto plot.

    python train/reproduce.py --data imagefolder --data-root ../shared/data/cifar10-jpeg \\
        --backbones resnet20,resnet56 --epochs 30 --device cuda --jobs 6 --out train/results

    # issue 7: gated presets against a static curve (1..3 blocks removed) at equal MACs
    python train/reproduce.py --presets dense,static,balanced,balanced-floor --static-curve 3 ...

    # issue 16 on a GPU: fast path, as many runs at once as raise throughput, stop cleanly after 9 minutes
    python train/reproduce.py --presets dense,rates,shaping,two-phase --device cuda --fast --jobs auto --time-limit 540 ...

Each run lives in OUT/runs/<backbone>-<preset>-s<seed>/; finished runs are skipped,
interrupted ones resumed (also across machines: rerun the same command to continue).
Writes OUT/results.md, OUT/results.json and OUT/pareto.png.
"""

import _bootstrap  # noqa: F401
from cosinegate.cli import run_main
from cosinegate.cli.reproduce import main

if __name__ == "__main__":
    run_main(main)
