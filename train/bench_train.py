#!/usr/bin/env python
"""Training throughput (images/s), dense vs gated, for each speed setting of train/train.py. (`cosinegate/cli/bench_train.py`; `--help` for the usage)."""

import _bootstrap  # noqa: F401
from cosinegate.cli import run_main
from cosinegate.cli.bench_train import main

if __name__ == "__main__":
    run_main(main)
