"""How a TensorRT release builds a precision for a target: the one decision tree behind both build paths.

``precision_plan`` decides, from the target profile, the release's guards (trtversion.py) and the request, whether
the network is strongly typed, which builder precisions are on, whether INT8 comes from a calibration cache, and
the DLA core; it reads no file and needs no TensorRT. ``cosinegate.trt.build.build_settings`` (Polygraphy's
loaders) and ``cosinegate.trt.trtexec.trtexec_command`` (the bundle's trtexec lines) render the same plan.
"""

from dataclasses import dataclass, field

from cosinegate.errors import CosineGateError
from cosinegate.trt.targets import check_dla_core


@dataclass
class PrecisionPlan:
    precision: str
    strongly_typed: bool
    fp16: bool
    int8: bool
    int8_path: str = None  # "qdq" | "cache" (int8 only)
    dla_core: int = None
    gpu_fallback: bool = False
    notes: list = field(default_factory=list)

    @property
    def uses_cache(self):
        """INT8 ranges from a calibration cache (implicit quantization)."""
        return self.int8 and not self.strongly_typed and self.int8_path == "cache"

    @property
    def pins_layers(self):
        """Whether per-layer FP32 pins apply (weakly typed fp16/int8 builds; strongly typed ones reject them)."""
        return not self.strongly_typed and (self.fp16 or self.int8)


def check_request(profile, precision, int8_path=None, dla_core=None):
    """(DLA core, INT8 path) of a request with the profile's defaults filled in (core 0 where it uses DLA; its INT8 path;
    None for another precision), refused in one line where the profile does not offer it, whatever the release."""
    if precision not in profile.precisions:
        raise CosineGateError(f"precision {precision!r} is not offered by {profile.name}; use one of "
                              f"{', '.join(profile.precisions)}.")
    check_dla_core(profile, dla_core)
    if dla_core is None and profile.use_dla:
        dla_core = 0
    if dla_core is not None and precision == "fp32":
        raise CosineGateError("DLA runs fp16 or int8 only; build fp16 or int8, or drop --dla-core.")
    if precision != "int8":
        return dla_core, None
    int8_path = int8_path or profile.default_int8_path
    if int8_path not in profile.int8_paths:
        raise CosineGateError(f"INT8 path {int8_path!r} is not offered by {profile.name}; use one of "
                              f"{', '.join(profile.int8_paths)}.")
    return dla_core, int8_path


def precision_plan(profile, version, precision, int8_path=None, dla_core=None, calibrator=None):
    """The plan for building ``precision`` with TensorRT ``version`` (a TrtVersion) for ``profile``; ``calibrator``:
    the cache's ("entropy2" | "minmax") where one is known. CosineGateError names what cannot be built and the fix."""
    dla_core, int8_path = check_request(profile, precision, int8_path, dla_core)
    if dla_core is not None and version.dla_int8_path is None:
        raise CosineGateError(f"TensorRT {version} has no DLA support on this target; drop --dla-core.")
    if version.requires_strongly_typed:
        if precision == "fp16":
            raise CosineGateError(f"TensorRT {version} builds strongly typed only, so --fp16 is gone; convert the ONNX "
                                  "to fp16 (keeping the gate heads fp32) and build it as fp32.")
        if int8_path == "cache":
            raise CosineGateError(f"TensorRT {version} removed calibration caches (implicit quantization); use the qdq "
                                  "INT8 path.")
    if dla_core is not None:
        if int8_path == "qdq" and version.dla_int8_path == "cache":
            raise CosineGateError(f"DLA on TensorRT {version} takes INT8 only from a calibration cache (implicit "
                                  "quantization), not from a Q/DQ graph; use the cache INT8 path (--int8 cache, masked "
                                  "form) or drop --dla-core.")
    plan = PrecisionPlan(precision, False, precision in ("fp16", "int8"), precision == "int8", int8_path, dla_core,
                         dla_core is not None and profile.gpu_fallback)
    check_calibrator(plan, calibrator)
    if int8_path == "qdq" and dla_core is not None:
        plan.notes.append("Q/DQ graph built weakly typed for DLA (--int8 --fp16): DLA turns on FP16, which a strongly "
                          "typed network refuses")
    elif version.requires_strongly_typed or (int8_path == "qdq" and version.supports_strongly_typed):
        plan.strongly_typed, plan.fp16, plan.int8 = True, False, False
        plan.notes.append("strongly typed: precision taken from the Q/DQ graph")
    elif int8_path == "cache" and version.calibrator_deprecated:
        plan.notes.append(f"implicit INT8 calibration is deprecated in TensorRT {version}; prefer --int8 qdq")
    return plan


def check_calibrator(plan, calibrator):
    """Refuse a MinMax cache for a DLA build from a cache (DLA reads EntropyCalibrator2 caches only)."""
    if plan.dla_core is not None and plan.int8_path == "cache" and calibrator == "minmax":
        raise CosineGateError("DLA reads only EntropyCalibrator2 caches and this cache is MinMax; recalibrate with "
                              "--method entropy, or drop --dla-core.")
