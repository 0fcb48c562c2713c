"""Polygraphy data loader over the calibration set, for calibrating on the device itself.

    COSINEGATE_CALIB_MODEL=model.onnx polygraphy convert model.onnx --int8 \
        --data-loader-script calibration/data_loader.py --calibration-cache calibration.cache -o model.engine

or in Python: `polygraphy.backend.trt.Calibrator(data_loader.load_data())`.
`load_data()` yields {"input": float32 [B, 3, S, S]} feed dicts of the same images, in the
same order, as calibration/calibrate.py uses (class-stratified sample of the TRAIN split):
by default of the model's own training data, at its input size S and with its normalization,
read from the graph's metadata (or from the checkpoint). It prints which data it used.
Configure with environment variables:

    COSINEGATE_CALIB_MODEL      the toolkit ONNX graph being calibrated (its metadata names its data)
    COSINEGATE_CALIB_CHECKPOINT or the checkpoint it was exported from (needs PyTorch)
    COSINEGATE_CALIB_DATA       other data: synthetic | cifar10 | imagefolder (default: the model's)
    COSINEGATE_CALIB_DATA_ROOT  its root (default: the model's)
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

OVERRIDE = ("set COSINEGATE_CALIB_DATA_ROOT=DIR where that data is, or COSINEGATE_CALIB_DATA=SOURCE "
            "[COSINEGATE_CALIB_DATA_ROOT=DIR] for other data")


def _whole(env, name, default, low, high):
    """A whole-number environment setting in [low, high], or one CosineGateError line naming it."""
    from cosinegate.errors import CosineGateError

    text = env.get(name, str(default))
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise CosineGateError(f"{name}={text!r} is not a whole number in {low}..{high}; set it to one (default {default}).")
    return value


def settings(environ=None):
    env = os.environ if environ is None else environ
    return {
        "model": env.get("COSINEGATE_CALIB_MODEL") or None,
        "checkpoint": env.get("COSINEGATE_CALIB_CHECKPOINT") or None,
        "source": env.get("COSINEGATE_CALIB_DATA") or None,
        "root": env.get("COSINEGATE_CALIB_DATA_ROOT") or None,
        "count": _whole(env, "COSINEGATE_CALIB_COUNT", 512, 1, 10**7),
        "seed": _whole(env, "COSINEGATE_CALIB_SEED", 0, 0, 2**32 - 1),
        "batch": _whole(env, "COSINEGATE_CALIB_BATCH", 1, 1, 4096),
    }


def model_origin(s):
    """(DataOrigin, normalization) of the model named by COSINEGATE_CALIB_MODEL or _CHECKPOINT."""
    from cosinegate.data.choice import DataOrigin
    from cosinegate.errors import CosineGateError

    if s["model"]:
        import onnx

        from cosinegate.graphmeta import get_metadata

        meta = get_metadata(onnx.load(s["model"], load_external_data=False))
        origin = DataOrigin.of_metadata(meta)
        if origin is None or not isinstance(meta.get("normalization"), dict):
            raise CosineGateError(f"COSINEGATE_CALIB_MODEL={s['model']} does not record its data and normalization "
                                  "(not exported by this toolkit); set COSINEGATE_CALIB_CHECKPOINT=CKPT instead.")
        return origin, meta["normalization"]
    if s["checkpoint"]:
        from cosinegate.data.normalization import of_checkpoint
        from cosinegate.training.checkpoint import load_checkpoint

        state = load_checkpoint(s["checkpoint"])
        return DataOrigin.of_checkpoint(state), of_checkpoint(state)
    raise CosineGateError("calibration/data_loader.py needs the model it calibrates, to draw its own training data at its "
                          "size and normalization: set COSINEGATE_CALIB_MODEL=model.onnx (or COSINEGATE_CALIB_CHECKPOINT=CKPT).")


def calibration_set(environ=None, log=None):
    """(CalibrationSet, normalization, data record) as the environment asks; the data used is printed to `log`."""
    from cosinegate.data.choice import choose_data
    from cosinegate.quant.calibset import select

    s = settings(environ)
    origin, normalization = model_origin(s)
    log = log or (lambda line: print(f"calibration/data_loader.py: {line}", file=sys.stderr))
    data = choose_data(origin, s["source"], s["root"], log=log, override=OVERRIDE)
    calib = select(data.train, s["count"], s["seed"], data.source, None if data.root is None else str(data.root))
    return calib, normalization, data.record()


def load_data(environ=None):
    """Generator of {"input": float32 NCHW} feed dicts over the calibration set."""
    from cosinegate.quant.calibset import batches

    calib, normalization, _ = calibration_set(environ)
    for batch in batches(calib.images, settings(environ)["batch"], normalization):
        yield {"input": batch}
