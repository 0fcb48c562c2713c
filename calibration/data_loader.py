"""Polygraphy data loader over the calibration set, for calibrating on the device itself.

    polygraphy convert model.onnx --int8 --data-loader-script calibration/data_loader.py \
        --calibration-cache calibration.cache -o model.engine

or in Python: `polygraphy.backend.trt.Calibrator(data_loader.load_data())`.
`load_data()` yields {"input": float32 [B, 3, 32, 32]} feed dicts of the same
images, in the same order, as calibration/calibrate.py uses (class-stratified
sample of the TRAIN split). Configure with environment variables:

    COSINEGATE_CALIB_DATA       data source (synthetic | cifar10 | imagefolder; default synthetic)
    COSINEGATE_CALIB_DATA_ROOT  data root
    COSINEGATE_CALIB_COUNT      number of images (default 512)
    COSINEGATE_CALIB_SEED       sample seed (default 0)
    COSINEGATE_CALIB_BATCH      batch size (default 1: a TensorRT engine built from the batch-1 graph)
"""

import os
import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))


def settings(environ=None):
    env = os.environ if environ is None else environ
    return {
        "source": env.get("COSINEGATE_CALIB_DATA", "synthetic"),
        "root": env.get("COSINEGATE_CALIB_DATA_ROOT") or None,
        "count": int(env.get("COSINEGATE_CALIB_COUNT", "512")),
        "seed": int(env.get("COSINEGATE_CALIB_SEED", "0")),
        "batch": int(env.get("COSINEGATE_CALIB_BATCH", "1")),
    }


def load_data(environ=None):
    """Generator of {"input": float32 NCHW} feed dicts over the calibration set."""
    from cosinegate.quant.calibset import batches, load_calibration_set

    s = settings(environ)
    calib = load_calibration_set(s["source"], s["root"], s["count"], s["seed"])
    for batch in batches(calib.images, s["batch"]):
        yield {"input": batch}
