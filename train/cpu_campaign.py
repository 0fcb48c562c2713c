#!/usr/bin/env python
"""Continue the CPU training campaigns from their committed state, until done or until the time limit. (`cosinegate/cli/cpu_campaign.py`; `--help` for the usage)."""

import _bootstrap  # noqa: F401
from cosinegate.cli import run_main
from cosinegate.cli.cpu_campaign import main

if __name__ == "__main__":
    run_main(main)
