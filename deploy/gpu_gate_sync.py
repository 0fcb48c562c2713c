#!/usr/bin/env python
"""Batch-1 cost of deciding on the host at each gate, with PyTorch (no TensorRT needed): (`cosinegate/cli/gpu_gate_sync.py`; `--help` for the usage)."""

import _bootstrap  # noqa: F401
from cosinegate.cli import run_main
from cosinegate.cli.gpu_gate_sync import main

if __name__ == "__main__":
    run_main(main)
