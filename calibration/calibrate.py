#!/usr/bin/env python
"""INT8 calibration: explicit Q/DQ ONNX graphs and a TensorRT calibration cache from one set of ranges.

    python calibration/calibrate.py --checkpoint CKPT [--data imagefolder --data-root DIR] \
        [--calib-images 512] [--seed 0] [--batch-size 32] [--method minmax|entropy|percentile] \
        [--percentile 99.99] [--trt-version 8.5|10.3] [--forms flat,conditional] [--out DIR]
    python calibration/calibrate.py --checkpoint CKPT --cache-in calibration.cache --method entropy --trt-version 8.5

Data: the training split of the data the checkpoint was trained on (its source and
root; --data/--data-root override them, a class-count mismatch is an error); the
choice is printed and recorded in manifest.json.

Writes to --out: model.qdq.onnx (flat twin, Q/DQ), model.qdq.conditional.onnx (Q/DQ
inside each dynamic block's If then-branch; `--forms` may add `masked`),
calibration.cache (TRT-<version>-EntropyCalibration2 for entropy,
MinMaxCalibration for minmax and percentile), manifest.json (method, image ids and
their sha256, checkpoint/ONNX hashes, TensorRT version, per-tensor amax).
Nothing is written unless everything was built and checked.

--trt-version: 8.5 (JetPack 5, = 8.5.2), 10.3 (JetPack 6.1/6.2, = 10.3.0) or a full version.
--cache-in FILE: take the ranges from an existing cache instead of calibrating; it
is refused unless its header matches --trt-version and the method's algorithm.
Paper-mode checkpoints have no conditional form: use --forms flat,masked.
"""

import _bootstrap  # noqa: F401
from cosinegate.cli import run_main
from cosinegate.cli.calibrate import main

if __name__ == "__main__":
    run_main(main)
