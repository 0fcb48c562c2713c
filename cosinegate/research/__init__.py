"""Research code, apart from the product: paper reproduction (`experiments`), the GPU and CPU training campaigns
(`campaign`, `campaign_run`, `cpu_campaign`), the campaign's deployment check of its leading run (`winner_check`) and how many
runs to train at once (`packing`).

It sits beside the pipeline, above everything the toolkit ships (tests/test_layers.py): it may use training, models,
data and the rest, and nothing below it imports it. Runs are trained in subprocesses (one thread each, several at
once) started as ``python -m cosinegate.cli.train`` (`TRAIN_COMMAND`), so they work from an installed package too.
"""

import os
import sys
from pathlib import Path

TRAIN_COMMAND = (sys.executable, "-m", "cosinegate.cli.train")
BENCH_TRAIN_COMMAND = (sys.executable, "-m", "cosinegate.cli.bench_train")  # throughput, and the concurrency probes


def child_env(**extra):
    """Environment for a training subprocess: this process's, with the folder holding this cosinegate package first on
    PYTHONPATH (so `-m cosinegate.cli.train` runs this code, from a checkout or an install), plus `extra`."""
    root = str(Path(__file__).resolve().parents[2])
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": root if not path else os.pathsep.join([root, path]), **extra}


def at_niceness(level):
    """A `preexec_fn` that puts the child at niceness `level` (absolute, where `os.nice` adds): a campaign started under
    `nice` (already at 10) still runs its training at 10, not 19. A child never gets a higher priority than its parent."""
    return lambda: os.nice(max(0, level - os.nice(0)))
