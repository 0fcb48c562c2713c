#!/usr/bin/env python
"""Export a CosineGate checkpoint to ONNX (plus a <out>.json manifest). (`cosinegate/cli/export_onnx.py`; `--help` for the usage)."""

import _bootstrap  # noqa: F401
from cosinegate.cli import run_main
from cosinegate.cli.export_onnx import main

if __name__ == "__main__":
    run_main(main)
