#!/usr/bin/env python
"""Evaluate a checkpoint with hard gate decisions: accuracy, executed MACs, savings, routing. (`cosinegate/cli/evaluate.py`; `--help` for the usage)."""

import _bootstrap  # noqa: F401
from cosinegate.cli import run_main
from cosinegate.cli.evaluate import main

if __name__ == "__main__":
    run_main(main)
