#!/usr/bin/env python
"""Latency, throughput, skip rate and executed MACs of an engine, an ONNX graph or a checkpoint. (`cosinegate/cli/bench.py`; `--help` for the usage)."""

import _bootstrap  # noqa: F401
from cosinegate.cli import run_main
from cosinegate.cli.bench import main

if __name__ == "__main__":
    run_main(main)
