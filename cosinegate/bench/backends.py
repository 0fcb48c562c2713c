"""The bench's view of the runtime runners (cosinegate.runtime): ``run(x) -> (outputs by name, gpu_ms or None)``.

Each backend is a runner activated for the whole bench: ONNX Runtime (a toolkit graph, or any ONNX model for
``--if-cost``), PyTorch (a checkpoint, CPU) and TensorRT (an engine whose manifest matches this machine).
"""

import time

import numpy as np

BACKENDS = ("onnxrt", "torch", "trt")


class Timed:
    """A runner activated for the bench; ``run(x)`` feeds its first input. ``batch``: the runner's fixed batch or None."""

    def __init__(self, runner):
        self.runner = runner.activate()
        self.name = runner.name
        self.input = runner.input_name
        batch = runner.input_metadata()[self.input][1][0]
        self.batch = batch if isinstance(batch, int) and batch > 0 else None

    def run(self, x):
        outputs = self.runner.infer({self.input: x})
        return outputs, self.runner.gpu_ms


class OnnxrtBackend(Timed):
    """A toolkit ONNX graph (checked as one) on ONNX Runtime's CPU provider with ``threads`` intra-op threads."""

    def __init__(self, onnx_path, threads=1, optimization="all"):
        from cosinegate.onnx import load_toolkit_onnx
        from cosinegate.runtime.onnxruntime_backend import OnnxRuntimeRunner
        from cosinegate.runtime.ort_engine import check_if_ort_engine

        check_if_ort_engine(onnx_path)
        super().__init__(OnnxRuntimeRunner(load_toolkit_onnx(onnx_path), threads=threads, optimization=optimization))


class OnnxrtGraph(Timed):
    """Any ONNX model (a ModelProto) on ONNX Runtime's CPU provider: first input fed, every output fetched."""

    def __init__(self, model, threads=1):
        from cosinegate.runtime.onnxruntime_backend import OnnxRuntimeRunner

        super().__init__(OnnxRuntimeRunner(model, threads=threads))


class TorchBackend(Timed):
    """A checkpoint's own forward on the CPU with ``threads`` torch threads."""

    def __init__(self, checkpoint, threads=1):
        from cosinegate.runtime.torch_backend import TorchRunner

        super().__init__(TorchRunner(checkpoint, threads=threads))
        self.model = self.runner.model


class TrtBackend(Timed):
    """An engine built by the toolkit for this TensorRT and GPU (its manifest checked first)."""

    def __init__(self, engine_path):
        from cosinegate.runtime.tensorrt_backend import TensorRTRunner
        from cosinegate.trt.build import detect_host
        from cosinegate.trt.manifest import check_engine_manifest
        from cosinegate.trtversion import require_tensorrt

        version = require_tensorrt("the trt bench backend")
        self.manifest = check_engine_manifest(engine_path, version, detect_host().compute_capability)
        settings = self.manifest.settings if isinstance(self.manifest.settings, dict) else {}
        super().__init__(TensorRTRunner(engine_path, purpose="the trt bench backend", dla_core=settings.get("dla_core")))


def time_interleaved(backends, batches, warmup=10, iterations=200, duration=None, rounds=5, clock="wall", by_round=False,
                     tick=None):
    """Time several backends in turns: `rounds` rounds, each running every backend for
    iterations/rounds runs (or duration/rounds seconds) in order, so drift in the machine's
    state (clock, other jobs, caches) falls on all of them alike. Returns {name: ms list}: host wall
    time, or with clock="gpu" the backends' CUDA-event times (TensorRT); ``by_round``: {name: [ms list per round]}
    (the spread between rounds is what the selection rule weighs a difference against). `tick()` (a progress
    bar's update) is called after each backend's turn in a round."""
    for backend in backends.values():
        time_backend(backend, batches, warmup=warmup, iterations=0)
    walls = {name: [] for name in backends}
    for _ in range(rounds):
        for name, backend in backends.items():
            chunk = time_backend(backend, batches, warmup=0, iterations=-(-iterations // rounds),
                                 duration=duration / rounds if duration else None)
            walls[name].append(chunk[1] if clock == "gpu" else chunk[0])
            if tick:
                tick()
    return walls if by_round else {name: [ms for chunk in chunks for ms in chunk] for name, chunks in walls.items()}


def time_backend(backend, batches, warmup=10, warmup_seconds=None, iterations=200, duration=None, tick=None):
    """Run warmup then the timed loop over ``batches`` (cycled); return (wall ms list, gpu ms list, gates list).
    `tick()` (a progress bar's update) is called after each timed run, outside the timed span."""
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
        if tick:
            tick()
    return wall, gpu, gates
