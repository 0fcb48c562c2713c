"""TensorRT INT8 calibration cache: the plain-text format its calibrators read.

Format (checked against real caches, e.g. ``TRT-8203-EntropyCalibration2`` in
NVIDIA/TensorRT issue #2036 and ``TRT-100300-EntropyCalibration2`` in the
DeepStream TrafficCamNet cache shipped for TensorRT 10.3):

    TRT-<NV_TENSORRT_VERSION>-<algorithm>
    <tensor name>: <8 hex digits>

- The version number is TensorRT's ``NV_TENSORRT_VERSION``: ``major*1000 +
  minor*100 + patch`` up to TensorRT 8 (NvInferRuntimeCommon.h, 8.x: 8.5.2 ->
  8502) and ``major*10000 + minor*100 + patch`` from TensorRT 10
  (NvInferRuntimeBase.h, ``NV_TENSORRT_VERSION_INT``: 10.3.0 -> 100300).
- The hex is the big-endian IEEE-754 float32 bit pattern of the scale
  amax / 127 (``3c010204`` = 1/127, i.e. amax 1.0).
- The algorithm names the calibrator class that may read the cache; TensorRT
  rejects a cache of another class ("Calibration table does not match
  calibrator algorithm type", ModelTC/MQBench#95) and skips an incompatible one
  (NVIDIA/TensorRT#1378), silently recalibrating, hence `check_cache`.
"""

import math
import os
import re
import struct
from pathlib import Path

import numpy as np

from cosinegate.artifacts import atomic_write_text
from cosinegate.errors import CosineGateError
from cosinegate import trtversion

ENTROPY = "EntropyCalibration2"
MINMAX = "MinMaxCalibration"
ALGORITHMS = (ENTROPY, MINMAX)

# Calibration method (cosinegate.quant.ranges) -> cache algorithm. TensorRT has no
# percentile calibrator. Cache scales are absolute and both classes use per
# activation tensor scales (TensorRT 8.5 API docs of IInt8MinMaxCalibrator and
# IInt8EntropyCalibrator2), so the tag only selects which calibrator class
# accepts the cache. A percentile amax is a clipped absolute range like a minmax
# one, so it is tagged MinMax, and EntropyCalibration2 always means "came from
# the KL search". Caveat: trtexec's built-in calibrator is IInt8EntropyCalibrator2
# (samples/common/sampleEngines.cpp), as is the one DLA requires, so a MinMax-tagged
# cache needs a builder that reads it with IInt8MinMaxCalibrator.
_ALGORITHM_BY_METHOD = {"entropy": ENTROPY, "minmax": MINMAX, "percentile": MINMAX}

_HEADER = re.compile(r"TRT-([0-9]{1,9})-([A-Za-z0-9]{1,64})")  # ASCII digits, bounded (as trtversion's)
_HEX_SCALE = re.compile(r"[0-9a-fA-F]{1,8}")
_INT8_MAX = 127.0
_MIN_SCALE = float(np.finfo(np.float32).tiny)  # the smallest normal float32: a denormal scale loses its precision
_MAX_SCALE = float(np.finfo(np.float32).max) / _INT8_MAX  # amax = 127 * scale must stay finite


def parse_version(trt_version):
    """'8.5.2' or '8.5.2.2' -> (8, 5, 2). The build number is not in the cache.

    Stricter than `cosinegate.trtversion.parse_version`: a cache header needs
    the patch number, so MAJOR.MINOR alone is refused.
    """
    parts = str(trt_version).strip().split(".")
    if len(parts) not in (3, 4) or not all(part.isdigit() for part in parts):
        raise CosineGateError(
            f"TensorRT version {trt_version!r} is not of the form MAJOR.MINOR.PATCH[.BUILD] (a calibration cache names "
            f"the patch release; short names: {', '.join(f'{k} = {v}' for k, v in trtversion.SHORT_RELEASES.items())}); "
            "pass it like 8.5.2 or 10.3.0."
        )
    version = trtversion.parse_version(".".join(parts[:3]))
    version.check_encodable()
    return tuple(version.parts)


def format_header(trt_version, algorithm):
    """First cache line, e.g. ('8.5.2', 'EntropyCalibration2') -> 'TRT-8502-EntropyCalibration2'."""
    if algorithm not in ALGORITHMS:
        raise CosineGateError(f"unknown calibration algorithm {algorithm!r}; use one of: {', '.join(ALGORITHMS)}.")
    return trtversion.calibration_cache_header(".".join(map(str, parse_version(trt_version))), algorithm)


def parse_header(header):
    """'TRT-100300-MinMaxCalibration' -> ((10, 3, 0), 'MinMaxCalibration')."""
    match = _HEADER.fullmatch(header.strip())
    if not match:
        raise CosineGateError(
            f"calibration cache header {header.strip()!r} is not of the form TRT-<version>-<algorithm>; "
            "the file is not a TensorRT calibration cache, regenerate it."
        )
    try:
        version, algorithm = trtversion.parse_calibration_cache_header(header)
        valid = version.nv_tensorrt_version == int(match.group(1))
    except CosineGateError:
        valid = False
    if not valid:
        raise CosineGateError(
            f"calibration cache header {header.strip()!r} has an unknown version number or algorithm; regenerate the cache."
        )
    return tuple(version.parts), algorithm


def algorithm_for(method, trt_version):
    """Cache algorithm for a calibration method on this TensorRT version.

    Both calibrator classes exist in every TensorRT with Q/DQ support (>= 8), so
    the version is only validated here.
    """
    parse_version(trt_version)
    if method not in _ALGORITHM_BY_METHOD:
        raise CosineGateError(
            f"unknown calibration method {method!r}; use one of: {', '.join(_ALGORITHM_BY_METHOD)}."
        )
    return _ALGORITHM_BY_METHOD[method]


def scale_hex(amax):
    """amax -> 8 lowercase hex digits of the big-endian float32 scale amax/127."""
    return struct.pack(">f", np.float32(amax / _INT8_MAX)).hex()


def write_cache(path, amax_by_tensor, header):
    """Write a cache (atomically) with one line per tensor, sorted by name."""
    parse_header(header)
    lines = [header]
    for name in sorted(amax_by_tensor):
        amax = float(amax_by_tensor[name])
        if not name or "\n" in name:
            raise CosineGateError(f"tensor name {name!r} cannot be written to a calibration cache.")
        if not (math.isfinite(amax) and amax > 0.0):
            raise CosineGateError(f"tensor {name!r} has amax {amax}; an INT8 scale needs a finite amax > 0.")
        lines.append(f"{name}: {scale_hex(amax)}")
    atomic_write_text(path, "\n".join(lines) + "\n")


def parse_cache(path_or_text):
    """(header, {tensor name: float32 scale}) from a cache path, or from its text.

    A str containing a newline (or bytes) is cache text; any other str or a
    path-like is a file path.
    """
    if isinstance(path_or_text, bytes):
        where, text = "text", _decode(path_or_text, "calibration cache text")
    elif isinstance(path_or_text, str) and "\n" in path_or_text:
        where, text = "text", path_or_text
    else:
        where = Path(os.fspath(path_or_text))
        text = trtversion.read_cache_text(where)
    lines = text.splitlines()
    if not lines:
        raise CosineGateError(f"calibration cache {where} is empty; recalibrate.")
    header = lines[0].strip()
    parse_header(header)
    scales = {}
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        name, colon, value = line.rpartition(":")
        value = value.strip()
        if not colon or not name or not _HEX_SCALE.fullmatch(value):
            raise CosineGateError(
                f"calibration cache {where} line {number} is not '<tensor>: <hex scale>': {line!r}; "
                "the file is corrupt, recalibrate."
            )
        if name in scales:
            raise CosineGateError(f"calibration cache {where} lists tensor {name!r} twice; recalibrate.")
        scale = float(struct.unpack(">f", bytes.fromhex(value.zfill(8)))[0])
        if not (math.isfinite(scale) and _MIN_SCALE <= scale <= _MAX_SCALE):
            raise CosineGateError(
                f"calibration cache {where} line {number} has scale {scale} for {name!r}; "
                f"scales must be finite, > 0 and normal float32 ({_MIN_SCALE:.3g} .. {_MAX_SCALE:.3g}, so that "
                "amax = 127 * scale is finite too), recalibrate."
            )
        scales[name] = scale
    return header, scales


def check_cache(path, trt_version, algorithm):
    """Refuse a cache built for another TensorRT version or algorithm; return its scales."""
    header, scales = parse_cache(path)
    cache_version, cache_algorithm = parse_header(header)
    if cache_version != parse_version(trt_version) or cache_algorithm != algorithm:
        built_for = ".".join(map(str, cache_version))
        raise CosineGateError(
            f"calibration cache {path} was built for TensorRT {built_for} with {cache_algorithm}; "
            f"this target uses TensorRT {trt_version} with {algorithm}; recalibrate with "
            f"`cosinegate calibrate --trt-version {trt_version}` or pass the matching cache."
        )
    return scales


def _decode(data, what):
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise CosineGateError(f"{what} is not plain text; the file is corrupt, recalibrate.") from None
