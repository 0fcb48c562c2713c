#!/usr/bin/env python
"""One GPU run of the training campaign (at most --budget seconds), continuing from the previous run's state. (`cosinegate/cli/campaign.py`; `--help` for the usage)."""

import _bootstrap  # noqa: F401
from cosinegate.cli import run_main
from cosinegate.cli.campaign import main

if __name__ == "__main__":
    run_main(main)
