"""``calibrate_checkpoint(settings)``: INT8 calibration of a checkpoint on its training data (or ranges from an
existing cache), written to one output folder (by default ``int8/`` beside the checkpoint); ``find_calibration``:
the calibration there that a build of the same checkpoint and data reuses."""

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

from cosinegate.errors import CosineGateError


@dataclass(frozen=True)
class CalibrationSettings:
    """The checkpoint, the calibration images and method, the forms to quantize, and the output folder."""

    checkpoint: str
    out: Optional[str] = None  # None: default_calibration_dir(checkpoint), where build_engine looks for it
    data: Optional[str] = None
    data_root: Optional[str] = None
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
    out: Optional[Path] = None  # the folder written


def calibrate_checkpoint(s, log=print):
    """Calibrate (or read ``s.cache_in``), check, and write every output to ``s.out``; a CalibrationResult.
    ``log``: notes and the progress bar over the calibration images (cosinegate.progress)."""
    from cosinegate.data.choice import DataOrigin, choose_data
    from cosinegate.quant.calibrate import calibrate, check_method, resolve_trt_version, write_outputs
    from cosinegate.quant.calibset import select
    from cosinegate.quant.names import DEFAULT_FORMS, DEFAULT_TRT
    from cosinegate.training.checkpoint import check_image_size, load_checkpoint

    trt_version = s.trt_version or DEFAULT_TRT
    check_method(s.method)
    resolve_trt_version(trt_version)
    state = load_checkpoint(s.checkpoint)
    check_image_size(s.image_size, state, s.checkpoint)
    calib_set = None
    if s.cache_in is None:
        data = choose_data(DataOrigin.of_checkpoint(state), s.data, s.data_root, log=log)
        calib_set = select(data.train, s.calib_images, s.seed, data.source, None if data.root is None else str(data.root))
    result = calibrate(s.checkpoint, calib_set, s.method, s.batch_size, s.percentile, trt_version,
                       list(DEFAULT_FORMS if s.forms is None else s.forms), s.policy, cache_in=s.cache_in, log=log)
    out = Path(s.out) if s.out else default_calibration_dir(s.checkpoint)
    return CalibrationResult(write_outputs(result, out), result.manifest, out)


def default_calibration_dir(checkpoint):
    """Where calibrate writes by default and build_engine looks for a calibration to reuse: ``int8/`` beside the
    checkpoint (RUN/int8 for RUN/best.pt)."""
    return Path(checkpoint).parent / "int8"


def find_calibration(checkpoint, data, form, log=print):
    """The calibration in ``default_calibration_dir(checkpoint)`` when it was made from this checkpoint (by SHA-256)
    on this data (``data``, a DataChoice: the source and root the stages use) with a Q/DQ graph of ``form``, its
    files unchanged; None otherwise. Either way one line says what was found: reused, or why not."""
    from cosinegate.artifacts import sha256_file
    from cosinegate.pipeline.stages import calibration_files

    folder = default_calibration_dir(checkpoint)
    if not folder.is_dir():
        return None
    checkpoint_sha = sha256_file(checkpoint)
    why = calibration_mismatch(folder, checkpoint_sha, data, form)
    if why is None:
        try:
            calibration_files(folder, form, checkpoint)
        except CosineGateError as exc:
            why = str(exc).rstrip(".")
    if why:
        log(f"not reusing the calibration in {folder}: {why}; calibrating again (--calibration DIR names one).")
        return None
    log(f"reused the calibration in {folder} (same checkpoint sha256 {checkpoint_sha[:12]}..., same data "
        f"{data.source}{'' if data.root is None else ' at ' + str(data.root)})")
    return folder


def calibration_mismatch(folder, checkpoint_sha, data, form):
    """Why the calibration in ``folder`` is not one of this checkpoint and data (None: it is)."""
    from cosinegate.artifacts import read_json
    from cosinegate.quant.names import FILE_BY_FORM, MANIFEST_NAME

    try:
        manifest = read_json(Path(folder) / MANIFEST_NAME, MANIFEST_NAME)
    except CosineGateError:
        return f"it has no readable {MANIFEST_NAME}"
    made_from = str(manifest.get("checkpoint_sha256"))
    if made_from != checkpoint_sha:
        return f"it was made from another checkpoint (sha256 {made_from[:12]}..., this one {checkpoint_sha[:12]}...)"
    source = manifest.get("calibration") or {}
    if not isinstance(source, dict) or not isinstance(manifest.get("onnx_sha256") or {}, dict):
        return f"its {MANIFEST_NAME} is not one calibrate writes"
    if source.get("kind") != "images":
        return "its ranges came from a cache (--cache-in), not from this checkpoint's data"
    if source.get("data") != data.source or not same_root(source.get("data_root"), data.root):
        return (f"it was calibrated on other data ({source.get('data')} at {source.get('data_root')}; this build uses "
                f"{data.source} at {data.root})")
    if FILE_BY_FORM[form] not in (manifest.get("onnx_sha256") or {}):
        return f"it has no {form} Q/DQ graph (calibrate with --forms flat,{form})"
    if manifest.get("policy", "auto") != "auto":
        return f"it was made with --policy {manifest.get('policy')}, the build's graph with auto"
    return None


def same_root(a, b):
    """Two data roots (None: the source's own) name the same folder."""
    if a is None or b is None:
        return a is None and b is None
    return Path(str(a)).resolve() == Path(str(b)).resolve()
