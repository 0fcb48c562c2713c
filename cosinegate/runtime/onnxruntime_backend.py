"""The ONNX Runtime runner: an ONNX graph on the CPU execution provider (torch-free; ONNX Runtime imported on
first use)."""

from collections import OrderedDict
from pathlib import Path

import numpy as np

from cosinegate.errors import CosineGateError
from cosinegate.graphmeta import get_metadata
from cosinegate.lazy import lazy_import, require
from cosinegate.runtime.base import Runner

ort = lazy_import("onnxruntime", "deploy", "the ONNX Runtime runner")

OPTIMIZATIONS = ("all", "basic", "none")
NATIVE = "onnxruntime-native"  # graphs optimized offline for ONNX Runtime (cosinegate.onnx.ort_native)
ONNX_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
              "tensor(int8)": np.int8, "tensor(uint8)": np.uint8, "tensor(int32)": np.int32, "tensor(int64)": np.int64,
              "tensor(bool)": np.bool_}


class OnnxRuntimeRunner(Runner):
    """``model``: an .onnx path, its serialized bytes or an onnx ModelProto.

    Options: ``threads`` intra-op threads (None: ONNX Runtime's default), one inter-op thread, sequential
    execution; ``optimization`` all / basic / none (a graph whose metadata says it was optimized offline for
    ONNX Runtime always loads unoptimized); ``spinning=False`` lets idle threads sleep (parity beside PyTorch on
    one core); ``log_severity`` ONNX Runtime's level (3: errors only)."""

    name = "onnxrt"

    def __init__(self, model, threads=1, optimization="all", spinning=True, log_severity=None, name=None):
        super().__init__(name)
        if optimization not in OPTIMIZATIONS:
            raise ValueError(f"optimization {optimization!r}; choose one of {', '.join(OPTIMIZATIONS)}")
        self.model = model
        self.threads, self.optimization, self.spinning, self.log_severity = threads, optimization, spinning, log_severity
        self.session = None
        self.output_names = None

    def _activate(self):
        options = ort.SessionOptions()
        if self.threads:
            options.intra_op_num_threads = int(self.threads)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        level = "none" if get_metadata(self._proto()).get("runtime") == NATIVE else self.optimization
        options.graph_optimization_level = {
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        }[level]
        if not self.spinning:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if self.log_severity is not None:
            options.log_severity_level = int(self.log_severity)
        source = str(self.model) if isinstance(self.model, (str, Path)) else self._serialized()
        try:
            self.session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types (InvalidGraph, Fail, ...)
            name = source if isinstance(source, str) else "the graph"
            first = " ".join(str(exc).split())[:200]
            raise CosineGateError(f"{name} is not a graph ONNX Runtime loads ({type(exc).__name__}: {first}); "
                                  "re-export it.") from exc
        self.output_names = [o.name for o in self.session.get_outputs()]

    def _deactivate(self):
        self.session = self.output_names = None

    def _proto(self):
        """The graph for its metadata: a path or bytes parsed without external data."""
        if isinstance(self.model, (str, Path)):
            return require("onnx", ("deploy", "device"), "the ONNX Runtime runner").load(str(self.model), load_external_data=False)
        if isinstance(self.model, (bytes, bytearray)):
            return require("onnx", ("deploy", "device"), "the ONNX Runtime runner").load_from_string(bytes(self.model))
        return self.model

    def _serialized(self):
        return bytes(self.model) if isinstance(self.model, (bytes, bytearray)) else self.model.SerializeToString()

    def input_metadata(self):
        return OrderedDict((i.name, (ONNX_TYPES.get(i.type, np.float32), tuple(i.shape))) for i in self.session.get_inputs())

    def _infer(self, feed):
        return OrderedDict(zip(self.output_names, self.session.run(self.output_names, dict(feed))))
