"""The TensorRT runner: a serialized engine with pycuda buffers, one stream, CUDA events around each
``execute_async_v3`` (TensorRT 8.5+). The toolkit's only code that handles TensorRT and pycuda buffers; both are
imported on activation, so importing this module needs neither (nor torch: the board runs it on JetPack's
Python 3.8)."""

from collections import OrderedDict
from pathlib import Path

import numpy as np

from cosinegate.errors import CosineGateError
from cosinegate.graphmeta import INPUT
from cosinegate.lazy import require
from cosinegate.runtime.base import Runner

NUMPY_TYPES = ("float32", "float16", "int8", "int32", "bool")  # tensorrt's DataType aliases, 8.5 to 11.x


class TensorRTRunner(Runner):
    """``engine``: an .engine path, its bytes, or a callable returning them (built on activation, as
    Polygraphy's loaders). ``inputs``: the names of the engine's input tensors (the toolkit's graphs have one,
    ``input``); every other I/O tensor is an output. Shapes are the engine's (static). ``dla_core``: the DLA core a
    DLA engine was built for (its manifest's ``settings.dla_core``), set on the runtime before deserializing."""

    name = "trt"

    def __init__(self, engine, inputs=(INPUT,), name=None, purpose="the TensorRT runner", dla_core=None):
        super().__init__(name)
        if dla_core is not None and (type(dla_core) is not int or dla_core < 0):
            raise CosineGateError(f"DLA core {dla_core!r} is not a core number; rebuild the engine with cosinegate build-engine.")
        self.dla_core = dla_core
        self.engine_source = engine
        self.inputs = tuple(inputs)
        self.purpose = purpose
        self.engine = self.context = self.stream = None
        self.host, self.device = {}, {}

    @classmethod
    def from_onnx(cls, model, fp16=False, int8=False, **options):
        """A runner whose engine is built from an ONNX graph (a path, or a ModelProto) on activation, with
        Polygraphy's loaders (``int8``: a Q/DQ graph, no calibration)."""

        def build():
            poly = require("polygraphy.backend.trt", ("deploy", "device"), options.get("purpose", "the TensorRT runner"))
            network = (poly.NetworkFromOnnxPath(str(model)) if isinstance(model, (str, Path))
                       else poly.NetworkFromOnnxBytes(model.SerializeToString()))
            return bytes(poly.EngineBytesFromNetwork(network, poly.CreateConfig(fp16=fp16, int8=int8))())

        if not isinstance(model, (str, Path)):
            options.setdefault("inputs", [i.name for i in model.graph.input])
        return cls(build, **options)

    def _activate(self):
        from cosinegate.trtversion import require_tensorrt

        version = require_tensorrt(self.purpose)
        require("pycuda.autoinit", "trt", self.purpose)  # the CUDA context
        cuda = require("pycuda.driver", "trt", self.purpose)
        trt = require("tensorrt", "trt", self.purpose)
        if not version.has_execute_async_v3:
            raise CosineGateError(f"TensorRT {version} lacks execute_async_v3 (8.5+); upgrade TensorRT.")
        self.bind(trt, cuda, self._engine_bytes())

    def _engine_bytes(self):
        source = self.engine_source
        if callable(source):
            return source()
        return source if isinstance(source, (bytes, bytearray)) else Path(source).read_bytes()

    def bind(self, trt, cuda, engine_bytes):
        """Deserialize the engine and give every I/O tensor a pinned host and a device buffer (``trt`` and ``cuda``
        are the modules, so tests/trt/test_api_surface.py can record the TensorRT names used)."""
        self.cuda = cuda
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        if self.dla_core is not None:  # before deserializing, as trtexec (sampleEngines.cpp 8.5.2 l.113-116)
            if self.dla_core >= runtime.num_DLA_cores:
                raise CosineGateError(f"the engine runs on DLA core {self.dla_core} and this device has "
                                      f"{runtime.num_DLA_cores} DLA cores; rebuild it for a core it has.")
            runtime.DLA_core = self.dla_core
        self.engine = runtime.deserialize_cuda_engine(engine_bytes)
        if self.engine is None:
            raise CosineGateError("TensorRT could not deserialize the engine (built by another TensorRT version or for "
                                  "another GPU?); rebuild it here with cosinegate build-engine.")
        self.context = self.engine.create_execution_context()
        self.stream = cuda.Stream()
        self.start, self.end = cuda.Event(), cuda.Event()
        self.host, self.device = OrderedDict(), OrderedDict()
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            shape = tuple(self.engine.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise CosineGateError(f"the engine's tensor {name!r} has a dynamic shape {list(shape)}; the runner feeds "
                                      "static shapes: build the engine from a graph with a fixed batch.")
            dtype = numpy_dtype(trt, self.engine.get_tensor_dtype(name))
            self.host[name] = cuda.pagelocked_empty(shape, dtype)
            self.device[name] = cuda.mem_alloc(self.host[name].nbytes)
            self.context.set_tensor_address(name, int(self.device[name]))
        missing = [name for name in self.inputs if name not in self.host]
        if missing:
            raise CosineGateError(f"the engine has no input {missing[0]!r} (its tensors: {', '.join(self.host)}); "
                                  "build it from a toolkit ONNX graph.")

    def _deactivate(self):
        self.host, self.device = {}, {}  # pycuda frees the buffers with their last reference
        self.engine = self.context = self.stream = None

    @property
    def batch(self):
        """The engine's batch (the first dimension of its first input)."""
        return self.host[self.inputs[0]].shape[0]

    def input_metadata(self):
        return OrderedDict((name, (self.host[name].dtype, self.host[name].shape)) for name in self.inputs)

    def _infer(self, feed):
        cuda = self.cuda
        for name in self.inputs:
            x = np.asarray(feed[name])
            if x.shape != self.host[name].shape:
                raise CosineGateError(f"input {name!r} is {list(x.shape)}, the engine takes {list(self.host[name].shape)}; "
                                      "feed batches of the engine's size.")
            np.copyto(self.host[name], x)
            cuda.memcpy_htod_async(self.device[name], self.host[name], self.stream)
        self.start.record(self.stream)
        self.context.execute_async_v3(self.stream.handle)
        self.end.record(self.stream)
        outputs = [name for name in self.host if name not in self.inputs]
        for name in outputs:
            cuda.memcpy_dtoh_async(self.host[name], self.device[name], self.stream)
        self.stream.synchronize()
        self.gpu_ms = self.end.time_since(self.start)
        return OrderedDict((name, self.host[name].copy()) for name in outputs)


def numpy_dtype(trt, dtype):
    """The numpy type of a TensorRT DataType, without ``trt.nptype``: TensorRT 8.5.2's (JetPack 5.1) maps bool to
    ``np.bool``, removed in numpy 1.24, so there every call fails (python/packaging/tensorrt/__init__.py, tag 8.5.2)."""
    for name in NUMPY_TYPES:
        if dtype == getattr(trt, name):
            return np.bool_ if name == "bool" else np.dtype(name).type
    raise CosineGateError(f"the engine has an I/O tensor of TensorRT type {dtype}, which the runner does not feed; "
                          "rebuild it from a toolkit ONNX graph (float32 input, logits and gates).")
