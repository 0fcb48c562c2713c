#!/usr/bin/env python
"""Check that an exported graph computes what its checkpoint computes, gate decisions included. (`cosinegate/cli/parity.py`; `--help` for the usage)."""

import _bootstrap  # noqa: F401
from cosinegate.cli import run_main
from cosinegate.cli.parity import main

if __name__ == "__main__":
    run_main(main)
