"""The one place that knows TensorRT versions and what each one can do, and which one is installed.

Core: parsing and the guards need no TensorRT (quant writes calibration cache headers with them, trt builds
with them); ``installed_tensorrt``/``require_tensorrt`` import it when asked.

Version guards (sources in brackets):

- ``has_execute_async_v3``: ``IExecutionContext.execute_async_v3`` exists from 8.5.
- ``supports_strongly_typed``: the ``kSTRONGLY_TYPED`` network flag and trtexec ``--stronglyTyped``
  exist from 9.0 [onnxruntime's TensorRT EP sets kSTRONGLY_TYPED under ``NV_TENSORRT_MAJOR > 8``];
  trtexec 8.5/8.6 has no ``--stronglyTyped``.
- ``calibrator_deprecated``: the implicit-quantization ``IInt8Calibrator`` path is deprecated
  from 10.1.
- ``requires_strongly_typed``: TensorRT 11 removed weakly typed
  networks and implicit quantization [NVIDIA/TensorRT README, 11.x announcement]. So on 11 every
  build is strongly typed: precision comes from the ONNX graph (Q/DQ nodes, fp16 tensors), the
  ``--fp16``/``--int8`` builder flags and per-layer precision constraints are gone, and an INT8
  engine can only come from a Q/DQ graph.
- ``skip_inference_flag``: trtexec 8.6+ calls it ``--skipInference``; 8.5 only has ``--buildOnly``.
- ``has_builder_optimization_level`` (8.6+) and ``dla_int8_path`` (cache on 8.x, weakly typed Q/DQ on 10.x, no DLA on 11): see each property.

The API names each guarded branch touches are checked against the official bindings of every
release (tests/data/trt_api/, tests/trt/test_api_surface.py); the trtexec flags against each
release's sampleOptions.cpp (tests/data/trtexec_flags/, tests/trt/test_trtexec_flags.py).

Calibration cache header: the first line of a TensorRT calibration cache is
``TRT-<NV_TENSORRT_VERSION>-<algorithm>``, e.g. ``TRT-8502-EntropyCalibration2`` (8.5.2) and
``TRT-100300-MinMaxCalibration`` (10.3.0). ``NV_TENSORRT_VERSION`` is
major*1000 + minor*100 + patch before 10 and major*10000 + minor*100 + patch from 10
(``NV_TENSORRT_VERSION_INT`` in NvInferVersion.h of TensorRT 10). Every reader of a cache (quant's parser, trt's
build and bundle) reads it through ``read_cache_text``, which bounds its size.
"""

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from cosinegate.artifacts import check_input_file
from cosinegate.errors import CosineGateError

# MAJOR[.MINOR[.PATCH[.BUILD]]] with an optional pre/post/dev-release tail as wheels and packages write
# it: 10.13.3.9.post1 and 10.14.1.48.post1 (tensorrt-cu12 wheels), 10.0.0b6, 8.6.1.post1, 10.3.0.30-1+cuda12.5
# (JetPack's dpkg version). The tail is kept as text and takes no part in comparisons.
# ASCII digits, at most 9 a part: \d takes any script's digits and int() of thousands of them fails or crawls
_VERSION_RE = re.compile(r"^\s*v?([0-9]{1,9}(?:\.[0-9]{1,9}){0,3})((?:[.-]?(?:post|dev|rc|a|b)[0-9]{0,9})*(?:-[0-9]{1,9})?"
                         r"(?:\+[A-Za-z0-9.]{1,64})?)\s*$")
_HEADER_RE = re.compile(r"^TRT-([0-9]{1,9})-([A-Za-z0-9]{1,64})$")

CALIBRATION_ALGORITHMS = {
    "entropy2": "EntropyCalibration2",
    "entropy": "EntropyCalibration",
    "minmax": "MinMaxCalibration",
    "legacy": "LegacyCalibration",
}


@dataclass(frozen=True)
class JetPack:
    """What one JetPack release ships: its TensorRT, the system Python its bindings are built for, the OS."""

    tensorrt: str
    python: str
    ubuntu: str


# JetPack release notes; each Jetson target profile's [[tensorrt]] jetpack lists agree (tests/trt/test_targets.py)
JETPACKS = {
    "5.1": JetPack("8.5.2", "3.8", "20.04"),
    "6.0": JetPack("8.6.2", "3.10", "22.04"),
    "6.1": JetPack("10.3.0", "3.10", "22.04"),
    "6.2": JetPack("10.3.0", "3.10", "22.04"),
}
# Short names of the two Jetson TensorRT worlds a calibration cache is written for: JetPack 5.1 and JetPack 6.1/6.2
SHORT_RELEASES = {"8.5": JETPACKS["5.1"].tensorrt, "10.3": JETPACKS["6.2"].tensorrt}


@dataclass(frozen=True, order=True)
class TrtVersion:
    """A TensorRT version; ``parts`` keeps as many numbers as were written (1 to 4), ``tail`` any
    ``.post1``/``b6``/``-1+cuda12.5`` suffix (not compared)."""

    parts: tuple
    tail: str = field(default="", compare=False)

    @property
    def major(self):
        return self.parts[0]

    @property
    def minor(self):
        return self._part(1)

    @property
    def patch(self):
        return self._part(2)

    def _part(self, index):
        return self.parts[index] if len(self.parts) > index else 0

    @property
    def release(self):
        """MAJOR.MINOR.PATCH ("8.5" -> "8.5.0"): what engines and calibration caches are tied to."""
        return ".".join(str(self._part(i)) for i in range(3))

    @property
    def is_exact(self):
        """Whether this names one release (MAJOR.MINOR.PATCH at least), not a family such as "10"."""
        return len(self.parts) >= 3

    def same_release(self, other):
        """Whether ``other`` (a TrtVersion) is this release (builds beyond the patch are not compared)."""
        return self.release == other.release

    def __str__(self):
        return ".".join(str(p) for p in self.parts)

    def at_least(self, *floor):
        """True when this version is at or above ``floor`` (e.g. ``at_least(10, 1)``)."""
        mine = tuple(self._part(i) for i in range(len(floor)))
        return mine >= tuple(floor)

    def starts_with(self, prefix):
        """True when ``prefix`` (a TrtVersion) names this version or a family containing it."""
        return self.parts[: len(prefix.parts)] == prefix.parts

    @property
    def has_execute_async_v3(self):
        return self.at_least(8, 5)

    @property
    def supports_strongly_typed(self):
        return self.at_least(9)

    @property
    def requires_strongly_typed(self):
        return self.at_least(11)

    @property
    def calibrator_deprecated(self):
        return self.at_least(10, 1)

    @property
    def has_builder_optimization_level(self):
        """``IBuilderConfig.builder_optimization_level`` / trtexec ``--builderOptimizationLevel``: 8.6+
        (absent from the 8.5.2 bindings, pyCore.cpp at tag 8.5.2; present in the 8.6.1 wheel)."""
        return self.at_least(8, 6)

    @property
    def dla_int8_path(self):
        """What INT8 on DLA means here: "cache" on 8.x (DLA takes implicit quantization only, so the
        calibration cache, EntropyCalibrator2); "qdq-weak" on 9/10 (the Q/DQ graph built weakly typed
        with --int8 --fp16, because trtexec sets kFP16 for DLA unless --int8 is on, which a strongly
        typed network refuses: sampleEngines.cpp setupNetworkAndConfig at v10.3.0); None on 11
        (no DLA on JetPack/SBSA in 11.0-11.4, per the 11.x DLA docs)."""
        if self.major < 9:
            return "cache"
        return "qdq-weak" if self.major < 11 else None

    @property
    def skip_inference_flag(self):
        return "--skipInference" if self.at_least(8, 6) else "--buildOnly"

    def check_encodable(self):
        """Refuse a version NV_TENSORRT_VERSION (a cache header's number) cannot hold."""
        if self.minor >= (100 if self.major >= 10 else 10) or self.patch >= 100:
            raise CosineGateError(f"TensorRT version {self} cannot be encoded in a cache header.")

    @property
    def nv_tensorrt_version(self):
        """The integer TensorRT writes into calibration cache headers (8.5.2 -> 8502; NV_TENSORRT_VERSION packs the
        minor into one decimal digit before 10, two from 10 on, and the patch into two): CosineGateError for a
        version it cannot hold."""
        self.check_encodable()
        scale = 10000 if self.major >= 10 else 1000
        return self.major * scale + self.minor * 100 + self.patch


def parse_version(text):
    """Parse "8.5.2.2", "10.3.0", "11.0", "10" or "10.13.3.9.post1" into a TrtVersion."""
    if isinstance(text, TrtVersion):
        return text
    match = _VERSION_RE.match(str(text))
    if not match:
        raise CosineGateError(
            f"TensorRT version {text!r} is not of the form MAJOR[.MINOR[.PATCH[.BUILD]]]; "
            "give it like 8.5.2 or 10.3.0."
        )
    return TrtVersion(tuple(int(p) for p in match.group(1).split(".")), match.group(2))


def calibration_cache_header(version, method):
    """First line of a calibration cache, e.g. ("8.5.2", "entropy2") -> "TRT-8502-EntropyCalibration2"."""
    algorithm = CALIBRATION_ALGORITHMS.get(method, method)
    if algorithm not in CALIBRATION_ALGORITHMS.values():
        raise CosineGateError(
            f"unknown calibration method {method!r}; use one of {', '.join(CALIBRATION_ALGORITHMS)}."
        )
    return f"TRT-{parse_version(version).nv_tensorrt_version}-{algorithm}"


MAX_CACHE_BYTES = 16 << 20  # a cache is a line a tensor: ResNet-56's is a few kilobytes


def read_cache_text(path):
    """The text of the calibration cache at ``path``: a regular file of at most MAX_CACHE_BYTES in UTF-8 (every
    reader of a cache from outside goes through here); a CosineGateError otherwise."""
    where = Path(os.fspath(path))
    check_input_file(where, "calibration cache")
    if where.stat().st_size > MAX_CACHE_BYTES:
        raise CosineGateError(f"calibration cache {where} is over {MAX_CACHE_BYTES} bytes, not a cache this toolkit "
                              "wrote; recalibrate.")
    try:
        return where.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise CosineGateError(f"calibration cache {where} is not plain text; the file is corrupt, recalibrate.") from None


def parse_calibration_cache_header(line):
    """Split a cache header into (TrtVersion with major.minor.patch, algorithm name)."""
    match = _HEADER_RE.match(line.strip())
    if not match or match.group(2) not in CALIBRATION_ALGORITHMS.values():
        raise CosineGateError(
            f"{line.strip()!r} is not a TensorRT calibration cache header "
            "(expected e.g. TRT-8502-EntropyCalibration2); regenerate the cache."
        )
    number = int(match.group(1))
    scale = 10000 if number >= 100000 else 1000
    major, rest = divmod(number, scale)
    minor, patch = divmod(rest, 100)
    return TrtVersion((major, minor, patch)), match.group(2)


def installed_tensorrt():
    """The installed TensorRT's version, or None when ``import tensorrt`` fails."""
    try:
        import tensorrt
    except ImportError:
        return None
    return parse_version(tensorrt.__version__)


def require_tensorrt(purpose):
    """Return the installed TensorRT version or raise a CosineGateError that says how to get it."""
    version = installed_tensorrt()
    if version is None:
        raise CosineGateError(
            f"TensorRT is not installed here, and {purpose} needs it. "
            "On Jetson it comes with JetPack (apt install python3-libnvinfer, or the full "
            "nvidia-jetpack); on a desktop, pip install tensorrt from NVIDIA's index "
            "(--extra-index-url https://pypi.nvidia.com). Without TensorRT, export the bundle "
            "and build on the target, or use the onnxrt backend instead."
        )
    return version
