#!/usr/bin/env python
"""Compare FP32 and INT8 (explicit Q/DQ) graphs of a checkpoint on the test split with ONNX Runtime.

    python calibration/evaluate_int8.py --checkpoint CKPT [--data imagefolder --data-root DIR] \
        [--methods minmax,entropy,percentile] [--test-images N] [--json OUT]

Data: the checkpoint's own training data unless --data/--data-root say otherwise.
Per method: ranges from the calibration set (class-stratified sample of the TRAIN
split, --calib-images/--seed), Q/DQ graph built like calibration/calibrate.py, then
top-1 of FP32 and INT8, top-1 agreement, gate-decision agreement per block and
the cosine similarity of the logits, on the (first --test-images images of the) test split.
Both sides run the masked form (same function as the conditional graph, batched);
--policy conditional-all (default) compares every gate.
"""

import _bootstrap  # noqa: F401
from cosinegate.cli import run_main
from cosinegate.cli.evaluate_int8 import main

if __name__ == "__main__":
    run_main(main)
