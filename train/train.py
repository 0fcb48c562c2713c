#!/usr/bin/env python
"""Train a CosineGate model (or its dense baseline) from a preset or YAML config. (`cosinegate/cli/train.py`; `--help` for the usage)."""

import _bootstrap  # noqa: F401
from cosinegate.cli import run_main
from cosinegate.cli.train import main

if __name__ == "__main__":
    run_main(main)
