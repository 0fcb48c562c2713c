"""The installed TensorRT, and the version rules of ``cosinegate.trtversion`` for the trt layer.

What each TensorRT version can do (``TrtVersion`` and its guards, ``parse_version``, the calibration cache
header) lives in the core module ``cosinegate.trtversion`` so that quant (below trt) reads it too; it is
re-exported here for trt's modules.
"""

from cosinegate.errors import CosineGateError
from cosinegate.trtversion import (  # noqa: F401 (re-exported for the trt layer)
    CALIBRATION_ALGORITHMS,
    TrtVersion,
    calibration_cache_header,
    parse_calibration_cache_header,
    parse_version,
)


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
