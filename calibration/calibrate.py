#!/usr/bin/env python
"""INT8 calibration: explicit Q/DQ ONNX graphs and a TensorRT calibration cache from one set of ranges. (`cosinegate/cli/calibrate.py`; `--help` for the usage)."""

import _bootstrap  # noqa: F401
from cosinegate.cli import run_main
from cosinegate.cli.calibrate import main

if __name__ == "__main__":
    run_main(main)
