#!/usr/bin/env python
"""Build a TensorRT engine for a target board, or the bundle the board needs to build it. (`cosinegate/cli/build_engine.py`; `--help` for the usage)."""

import _bootstrap  # noqa: F401
from cosinegate.cli import run_main
from cosinegate.cli.build_engine import main

if __name__ == "__main__":
    run_main(main)
