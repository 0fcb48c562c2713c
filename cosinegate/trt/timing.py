"""Any small ONNX graph as a TensorRT engine for timing (``bench.py --if-cost --backend trt``).

The runtime's TensorRT runner with its engine built here by Polygraphy's loaders (TensorRT 8.5 to 10.x). The
wall time of ``run`` includes the host's wait for every ``If`` condition: what a conditional costs there.
"""

from cosinegate.bench.backends import Timed
from cosinegate.trt.versions import require_tensorrt


class TrtGraph(Timed):
    """Build the ONNX model (a ModelProto) on this GPU; ``run(x)`` feeds its first input, returns every output."""

    def __init__(self, model, precision="fp16"):
        from cosinegate.runtime.tensorrt_backend import TensorRTRunner

        purpose = "bench.py --if-cost --backend trt"
        require_tensorrt(purpose)
        super().__init__(TensorRTRunner.from_onnx(model, fp16=precision == "fp16", purpose=purpose))
