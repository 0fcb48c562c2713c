#!/usr/bin/env python
"""Benchmark helper: a copy of a predictive checkpoint whose gates skip a known fraction of images. (`cosinegate/cli/force_gates.py`; `--help` for the usage)."""

import _bootstrap  # noqa: F401
from cosinegate.cli import run_main
from cosinegate.cli.force_gates import main

if __name__ == "__main__":
    run_main(main)
