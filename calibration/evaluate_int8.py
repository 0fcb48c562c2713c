#!/usr/bin/env python
"""Compare FP32 and INT8 (explicit Q/DQ) graphs of a checkpoint on the test split with ONNX Runtime. (`cosinegate/cli/evaluate_int8.py`; `--help` for the usage)."""

import _bootstrap  # noqa: F401
from cosinegate.cli import run_main
from cosinegate.cli.evaluate_int8 import main

if __name__ == "__main__":
    run_main(main)
