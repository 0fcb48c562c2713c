"""Bench backends: ONNX Runtime, PyTorch (CPU) and TensorRT (pycuda, imported lazily).

Each backend is ``run(x) -> (outputs dict with "logits" and "gates", gpu_ms or None)``.
"""

import time
from pathlib import Path

import numpy as np

from cosinegate.errors import CosineGateError

BACKENDS = ("onnxrt", "torch", "trt")


class OnnxrtBackend:
    name = "onnxrt"

    def __init__(self, onnx_path, threads=1, optimization="all"):
        from cosinegate.onnx import load_toolkit_onnx
        from cosinegate.onnx.export import get_metadata

        model = load_toolkit_onnx(onnx_path)
        if get_metadata(model).get("runtime") == "onnxruntime-native":
            optimization = "none"  # optimized offline already (cosinegate.onnx.ort_native)
        data = Path(onnx_path).read_bytes() if isinstance(onnx_path, (str, Path)) else onnx_path
        self.session = onnxrt_session(data, threads, optimization)
        self.input = self.session.get_inputs()[0]
        self.batch = self.input.shape[0] if isinstance(self.input.shape[0], int) else None

    def run(self, x):
        logits, gates = self.session.run(["logits", "gates"], {self.input.name: x})
        return {"logits": logits, "gates": gates}, None


class OnnxrtGraph:
    """Any ONNX model (a ModelProto) on ONNX Runtime's CPU provider: first input fed, every output fetched."""

    name = "onnxrt"

    def __init__(self, model, threads=1):
        self.session = onnxrt_session(model.SerializeToString(), threads, "all")
        self.input = self.session.get_inputs()[0].name

    def run(self, x):
        return {"outputs": self.session.run(None, {self.input: x})}, None


def onnxrt_session(data, threads=1, optimization="all"):
    """A sequential CPU session of serialized ONNX ``data`` with ``threads`` intra-op threads."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = {
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    }[optimization]
    return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])


class TorchBackend:
    name = "torch"

    def __init__(self, checkpoint, threads=1):
        import torch

        from cosinegate.training.checkpoint import model_from_checkpoint

        torch.set_num_threads(threads)
        self.torch = torch
        self.model, _ = model_from_checkpoint(checkpoint)
        self.model.eval()
        self.batch = None

    def run(self, x):
        with self.torch.inference_mode():
            logits, stats = self.model(self.torch.from_numpy(x))
        return {"logits": logits.numpy(), "gates": stats.gates.numpy()}, None


class TrtBackend:
    """TensorRT engine with pycuda buffers, one stream, CUDA events around each execute_async_v3."""

    name = "trt"

    def __init__(self, engine_path):
        from cosinegate.trt.build import detect_host
        from cosinegate.trt.manifest import check_engine_manifest
        from cosinegate.trt.versions import require_tensorrt

        version = require_tensorrt("the trt bench backend")
        host = detect_host()
        self.manifest = check_engine_manifest(engine_path, version, host.compute_capability)
        try:
            import pycuda.autoinit  # noqa: F401
            import pycuda.driver as cuda
        except ImportError as exc:
            raise CosineGateError("the trt backend needs pycuda (JetPack: pip install pycuda); not importable here.") from exc
        import tensorrt as trt

        if not version.has_execute_async_v3:
            raise CosineGateError(f"TensorRT {version} lacks execute_async_v3 (8.5+); upgrade TensorRT.")
        self.cuda = cuda
        self.bind(trt, cuda, Path(engine_path).read_bytes())
        self.batch = self.host["input"].shape[0]

    def bind(self, trt, cuda, engine_bytes):
        """Deserialize the engine and give every I/O tensor a pinned host and a device buffer (the
        TensorRT calls of this backend; ``trt`` and ``cuda`` are the modules, so the API-surface test
        can record what is used)."""
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(engine_bytes)
        self.context = self.engine.create_execution_context()
        self.stream = cuda.Stream()
        self.start, self.end = cuda.Event(), cuda.Event()
        self.host, self.device = {}, {}
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            shape = tuple(self.engine.get_tensor_shape(name))
            dtype = numpy_dtype(trt, self.engine.get_tensor_dtype(name))
            self.host[name] = cuda.pagelocked_empty(shape, dtype)
            self.device[name] = cuda.mem_alloc(self.host[name].nbytes)
            self.context.set_tensor_address(name, int(self.device[name]))

    def run(self, x):
        np.copyto(self.host["input"], x)
        self.cuda.memcpy_htod_async(self.device["input"], self.host["input"], self.stream)
        self.start.record(self.stream)
        self.context.execute_async_v3(self.stream.handle)
        self.end.record(self.stream)
        for name in ("logits", "gates"):
            self.cuda.memcpy_dtoh_async(self.host[name], self.device[name], self.stream)
        self.stream.synchronize()
        return {"logits": self.host["logits"].copy(), "gates": self.host["gates"].copy()}, self.end.time_since(self.start)


NUMPY_TYPES = ("float32", "float16", "int8", "int32", "bool")  # tensorrt's DataType aliases, 8.5 to 11.x


def numpy_dtype(trt, dtype):
    """The numpy type of a TensorRT DataType, without ``trt.nptype``: TensorRT 8.5.2's (JetPack 5.1) maps bool to
    ``np.bool``, removed in numpy 1.24, so there every call fails (python/packaging/tensorrt/__init__.py, tag 8.5.2)."""
    for name in NUMPY_TYPES:
        if dtype == getattr(trt, name):
            return np.bool_ if name == "bool" else np.dtype(name).type
    raise CosineGateError(f"the engine has an I/O tensor of TensorRT type {dtype}, which the bench does not feed; "
                          "rebuild it from a toolkit ONNX graph (float32 input, logits and gates).")


def time_interleaved(backends, batches, warmup=10, iterations=200, duration=None, rounds=5, clock="wall"):
    """Time several backends in turns: `rounds` rounds, each running every backend for
    iterations/rounds runs (or duration/rounds seconds) in order, so drift in the machine's
    state (clock, other jobs, caches) falls on all of them alike. Returns {name: ms list}: host wall
    time, or with clock="gpu" the backends' CUDA-event times (TensorRT)."""
    for backend in backends.values():
        time_backend(backend, batches, warmup=warmup, iterations=0)
    walls = {name: [] for name in backends}
    for _ in range(rounds):
        for name, backend in backends.items():
            chunk = time_backend(backend, batches, warmup=0, iterations=-(-iterations // rounds),
                                 duration=duration / rounds if duration else None)
            walls[name] += chunk[1] if clock == "gpu" else chunk[0]
    return walls


def time_backend(backend, batches, warmup=10, warmup_seconds=None, iterations=200, duration=None):
    """Run warmup then the timed loop over ``batches`` (cycled); return (wall ms list, gpu ms list, gates list)."""
    n = len(batches)
    i = 0
    end = time.perf_counter() + warmup_seconds if warmup_seconds else None
    while (end is not None and time.perf_counter() < end) or (end is None and i < warmup):
        backend.run(batches[i % n])
        i += 1
    wall, gpu, gates = [], [], []
    stop = time.perf_counter() + duration if duration else None
    k = 0
    while (stop is not None and (k == 0 or time.perf_counter() < stop)) or (stop is None and k < iterations):  # a duration runs once at least
        x = batches[k % n]
        t0 = time.perf_counter()
        out, gpu_ms = backend.run(x)
        wall.append((time.perf_counter() - t0) * 1e3)
        if gpu_ms is not None:
            gpu.append(gpu_ms)
        if k < n and "gates" in out:
            gates.append(np.asarray(out["gates"]))
        k += 1
    return wall, gpu, gates
