"""Any small ONNX graph as a TensorRT engine for timing (``cosinegate bench --if-cost --backend trt``).

The runtime's TensorRT runner with its engine built here by Polygraphy's loaders (TensorRT 8.5 to 10.x), in the
bench's backend protocol. The wall time of ``run`` includes the host's wait for every ``If`` condition: what a
conditional costs there.
"""

from cosinegate.trtversion import require_tensorrt


class TrtGraph:
    """Build the ONNX model (a ModelProto) on this GPU; ``run(x)`` feeds its first input and returns (every output by
    name, GPU ms)."""

    name = "trt"

    def __init__(self, model, precision="fp16"):
        from cosinegate.runtime.tensorrt_backend import TensorRTRunner

        purpose = "bench --if-cost --backend trt"
        require_tensorrt(purpose)
        self.runner = TensorRTRunner.from_onnx(model, fp16=precision == "fp16", purpose=purpose).activate()
        self.input = model.graph.input[0].name

    def run(self, x):
        return self.runner.infer({self.input: x}), self.runner.gpu_ms
