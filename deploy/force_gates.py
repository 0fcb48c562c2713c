#!/usr/bin/env python
"""Benchmark helper: a copy of a predictive checkpoint whose gates skip a known fraction of images.

    python deploy/force_gates.py --checkpoint CKPT --skip 0.5 --out forced.pt

Each gated block's threshold is moved, block by block, so that it skips --skip of the first
--samples test images (of the checkpoint's data, at its image size) exactly; the skip rates
stored for the deploy policy are measured on those images. The copy records that its gates
were forced: it is for speed measurements (realized vs ideal speedup), not for accuracy.
"""

import _bootstrap  # noqa: F401
from cosinegate.cli import run_main
from cosinegate.cli.force_gates import main

if __name__ == "__main__":
    run_main(main)
