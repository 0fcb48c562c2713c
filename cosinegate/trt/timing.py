"""Any small ONNX graph as a TensorRT engine for timing (``bench.py --if-cost --backend trt``).

Polygraphy's ``NetworkFromOnnxBytes`` -> ``CreateConfig`` -> ``EngineFromNetwork`` -> ``TrtRunner`` (TensorRT
8.5 to 10.x). The wall time of ``run`` includes the host's wait for every ``If`` condition: what a
conditional costs there.
"""

from cosinegate.trt.versions import require_tensorrt


class TrtGraph:
    """Build the serialized ONNX model on this GPU; ``run(x)`` feeds its first input, returns every output."""

    name = "trt"

    def __init__(self, model, precision="fp16"):
        require_tensorrt("bench.py --if-cost --backend trt")
        from polygraphy.backend.trt import CreateConfig, EngineFromNetwork, NetworkFromOnnxBytes, TrtRunner

        config = CreateConfig(fp16=precision == "fp16")
        self.runner = TrtRunner(EngineFromNetwork(NetworkFromOnnxBytes(model.SerializeToString()), config=config))
        self.runner.activate()
        self.input = model.graph.input[0].name

    def run(self, x):
        outputs = self.runner.infer({self.input: x})
        return {"outputs": list(outputs.values())}, None
