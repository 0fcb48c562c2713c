"""A recording stand-in for the ``tensorrt`` module: it only drives the version-guarded branches and
records every attribute the code reads, sets or calls, so tests/trt/test_api_surface.py can check those
names against the official bindings of each release. It is never evidence that a build works."""

CLASSES = ("IInt8EntropyCalibrator2", "IInt8MinMaxCalibrator")


class Recorder:
    """Attribute access, attribute assignment and calls all record the attribute name in ``log``."""

    def __init__(self, log, values=None, label="trt"):
        object.__setattr__(self, "_log", log)
        object.__setattr__(self, "_values", dict(values or {}))
        object.__setattr__(self, "_label", label)

    def __getattr__(self, name):
        if name.startswith("__") and name != "__version__":
            raise AttributeError(name)
        self._log.add(name)
        if name in self._values:
            return self._values[name]
        child = Recorder(self._log, label=f"{self._label}.{name}")
        self._values[name] = child
        return child

    def __setattr__(self, name, value):
        self._log.add(name)
        self._values[name] = value

    def __call__(self, *args, **kwargs):
        return Recorder(self._log, label=f"{self._label}()")

    def __int__(self):
        return 0

    __index__ = __int__

    def __iter__(self):
        return iter(())

    def __repr__(self):
        return f"<{self._label}>"


def fake_tensorrt(version, log):
    """A ``tensorrt`` module stand-in reporting ``version``; calibrator bases are real classes."""
    values = {"__version__": version}
    for name in CLASSES:
        values[name] = type(name, (), {"__init__": lambda self: None})
    return Recorder(log, values)


class FakeTensor(Recorder):
    def __init__(self, log, dtype):
        super().__init__(log, {"dtype": dtype}, "tensor")


def fake_layer(log, name, dtypes_in, dtypes_out):
    """A layer recorder with a name and tensors of the given dtypes (trt.float32 / trt.bool recorders)."""
    inputs = [FakeTensor(log, d) for d in dtypes_in]
    outputs = [FakeTensor(log, d) for d in dtypes_out]
    return Recorder(log, {"name": name, "num_inputs": len(inputs), "num_outputs": len(outputs),
                          "get_input": inputs.__getitem__, "get_output": outputs.__getitem__}, f"layer {name}")


class FakeCuda:
    """pycuda.driver stand-in for the TensorRT runner (its names are pycuda's, not TensorRT's, and are not checked):
    device buffers are host arrays, so what goes in comes back out; every copy is logged in ``copies``."""

    def __init__(self):
        import numpy as np

        self.copies = []
        self.pagelocked_empty = lambda shape, dtype: np.zeros(shape, dtype)
        self.mem_alloc = lambda nbytes: 0
        self.Stream = lambda: type("S", (), {"handle": 0, "synchronize": lambda self: None})()
        event = type("E", (), {"record": lambda self, stream: None, "time_since": lambda self, other: 0.25})
        self.Event = event
        self.memcpy_htod_async = lambda device, host, stream: self.copies.append(("htod", host.copy()))
        self.memcpy_dtoh_async = lambda host, device, stream: self.copies.append(("dtoh", host.shape))


def fake_engine_modules(monkeypatch, release, log, shapes, dtype="float32", dla_cores=0):
    """``tensorrt`` (a recorder reporting ``release``) and ``pycuda`` stand-ins installed in sys.modules, with a
    runtime of ``dla_cores`` DLA cores that deserializes any bytes into an engine of I/O tensors ``shapes``
    {name: shape}; ``trt.Runtime(None).deserialized_on`` lists its DLA_core at each deserialization (None: unset).
    Returns (trt, cuda)."""
    import sys

    trt = fake_tensorrt(release, log)
    engine = Recorder(log, {"num_io_tensors": len(shapes), "get_tensor_name": list(shapes).__getitem__,
                            "get_tensor_shape": shapes.__getitem__, "get_tensor_dtype": lambda name: getattr(trt, dtype)},
                      "engine")
    deserialized_on = []

    def deserialize(data):
        deserialized_on.append(runtime._values.get("DLA_core"))
        return engine

    runtime = Recorder(log, {"deserialize_cuda_engine": deserialize, "num_DLA_cores": dla_cores}, "runtime")
    object.__setattr__(runtime, "deserialized_on", deserialized_on)
    trt._values.update(Runtime=lambda logger: runtime)
    cuda = FakeCuda()
    for name, module in (("tensorrt", trt), ("pycuda", object()), ("pycuda.autoinit", object()), ("pycuda.driver", cuda)):
        monkeypatch.setitem(sys.modules, name, module)
    return trt, cuda
