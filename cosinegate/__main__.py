"""`python -m cosinegate SUBCOMMAND ...`, the same as the `cosinegate` console command."""

import sys

from cosinegate.cli import console_main

sys.exit(console_main())
