"""``calibrate_checkpoint(settings)``: INT8 calibration of a checkpoint on its training data (or ranges from an
existing cache), written to one output folder."""

from dataclasses import dataclass
from typing import Optional, Tuple

from cosinegate.errors import CosineGateError


@dataclass(frozen=True)
class CalibrationSettings:
    """The checkpoint, the calibration images and method, the forms to quantize, and the output folder."""

    checkpoint: str
    out: str = "calibration_out"
    data: Optional[str] = None
    data_root: Optional[str] = None
    subset: Optional[int] = None  # refused: calibration takes calib_images
    image_size: Optional[int] = None
    calib_images: int = 512
    seed: int = 0
    batch_size: int = 32
    method: str = "entropy"  # minmax | entropy | percentile
    percentile: float = 99.99
    trt_version: Optional[str] = None  # None: the toolkit's default release
    forms: Optional[Tuple[str, ...]] = None  # None: the default forms (flat, conditional)
    policy: str = "auto"
    cache_in: Optional[str] = None  # an existing cache to take the ranges from


@dataclass
class CalibrationResult:
    """The files written to the output folder and the calibration manifest."""

    names: list
    manifest: dict


def calibrate_checkpoint(s, log=print):
    """Calibrate (or read ``s.cache_in``), check, and write every output to ``s.out``; a CalibrationResult.
    ``log``: notes and the progress bar over the calibration images (cosinegate.progress)."""
    from cosinegate.data.choice import DataOrigin, choose_data
    from cosinegate.quant.calibrate import DEFAULT_FORMS, DEFAULT_TRT, calibrate, check_method, resolve_trt_version, write_outputs
    from cosinegate.quant.calibset import select
    from cosinegate.training.checkpoint import check_image_size, load_checkpoint

    trt_version = s.trt_version or DEFAULT_TRT
    check_method(s.method)
    resolve_trt_version(trt_version)
    if s.subset is not None:
        raise CosineGateError("--subset is not used by calibration; use --calib-images N.")
    state = load_checkpoint(s.checkpoint)
    check_image_size(s.image_size, state, s.checkpoint)
    calib_set = None
    if s.cache_in is None:
        data = choose_data(DataOrigin.of_checkpoint(state), s.data, s.data_root, log=log)
        calib_set = select(data.train, s.calib_images, s.seed, data.source, None if data.root is None else str(data.root))
    result = calibrate(s.checkpoint, calib_set, s.method, s.batch_size, s.percentile, trt_version,
                       list(DEFAULT_FORMS if s.forms is None else s.forms), s.policy, cache_in=s.cache_in, log=log)
    return CalibrationResult(write_outputs(result, s.out), result.manifest)
