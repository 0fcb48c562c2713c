#!/usr/bin/env python
"""Reproduce the paper's CIFAR-10 table honestly: same recipe, real executed MACs, Pareto plot. (`cosinegate/cli/reproduce.py`; `--help` for the usage)."""

import _bootstrap  # noqa: F401
from cosinegate.cli import run_main
from cosinegate.cli.reproduce import main

if __name__ == "__main__":
    run_main(main)
