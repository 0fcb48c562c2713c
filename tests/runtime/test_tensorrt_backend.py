"""The TensorRT runner, driven with stand-ins for ``tensorrt`` and ``pycuda`` (tests/trt_recorder.py): what it
copies in and out, what it refuses, and what it says when a module is missing. The real engine runs on the device."""

import subprocess
import sys

import numpy as np
import pytest
from trt_recorder import fake_engine_modules

from cosinegate.errors import CosineGateError
from cosinegate.runtime.tensorrt_backend import TensorRTRunner

SHAPES = {"input": (2, 3, 8, 8), "logits": (2, 10), "gates": (2, 9)}


def test_an_engine_file_runs_with_its_buffers(monkeypatch, tmp_path):
    _, cuda = fake_engine_modules(monkeypatch, "10.3.0", set(), SHAPES)
    (tmp_path / "m.engine").write_bytes(b"plan")
    x = np.random.default_rng(0).standard_normal(SHAPES["input"], dtype=np.float32)
    with TensorRTRunner(tmp_path / "m.engine") as runner:
        assert runner.input_metadata() == {"input": (np.float32, SHAPES["input"])} and runner.batch == 2
        outputs = runner.infer({"input": x})
    assert list(outputs) == ["logits", "gates"] and outputs["gates"].shape == (2, 9)
    assert runner.gpu_ms == 0.25 and runner.inference_time > 0 and not runner.is_active
    assert cuda.copies[0][0] == "htod" and np.array_equal(cuda.copies[0][1], x)
    assert [c[0] for c in cuda.copies[1:]] == ["dtoh", "dtoh"]


def test_a_dla_engine_is_deserialized_on_its_core(monkeypatch):
    """trtexec sets the runtime's DLA core before deserializing (sampleEngines.cpp 8.5.2 l.113-116); so does the runner."""
    trt, _ = fake_engine_modules(monkeypatch, "8.5.2", set(), SHAPES, dla_cores=2)
    with TensorRTRunner(b"plan"):
        pass
    assert trt.Runtime(None).deserialized_on == [None]  # a GPU engine: the runtime's default
    trt, _ = fake_engine_modules(monkeypatch, "8.5.2", set(), SHAPES, dla_cores=2)
    with TensorRTRunner(b"plan", dla_core=1):
        pass
    assert trt.Runtime(None).deserialized_on == [1]
    with pytest.raises(CosineGateError, match="DLA core 2 and this device has 2 DLA cores"):
        TensorRTRunner(b"plan", dla_core=2).activate()
    with pytest.raises(CosineGateError, match="'1' is not a core number"):
        TensorRTRunner(b"plan", dla_core="1")


def test_a_feed_of_another_shape_is_refused(monkeypatch):
    fake_engine_modules(monkeypatch, "10.3.0", set(), SHAPES)
    with TensorRTRunner(b"plan") as runner, pytest.raises(CosineGateError, match=r"\[1, 3, 8, 8\].*\[2, 3, 8, 8\]"):
        runner.infer({"input": np.zeros((1, 3, 8, 8), np.float32)})


def test_dynamic_shapes_and_unknown_inputs_are_refused(monkeypatch):
    fake_engine_modules(monkeypatch, "10.3.0", set(), dict(SHAPES, input=(-1, 3, 8, 8)))
    with pytest.raises(CosineGateError, match="dynamic shape"):
        TensorRTRunner(b"plan").activate()
    fake_engine_modules(monkeypatch, "10.3.0", set(), SHAPES)
    with pytest.raises(CosineGateError, match="no input 'images'"):
        TensorRTRunner(b"plan", inputs=["images"]).activate()


def test_an_engine_from_onnx_is_built_on_activation(monkeypatch):
    import polygraphy.backend.trt as poly_trt

    from cosinegate.bench.ifcost import trivial_if_chain

    fake_engine_modules(monkeypatch, "10.3.0", set(), {"input": (1, 3, 8, 8), "output": (1, 3, 8, 8)})
    built = []
    monkeypatch.setattr(poly_trt, "NetworkFromOnnxBytes", lambda data: ("network", len(data)))
    monkeypatch.setattr(poly_trt, "CreateConfig", lambda **kw: kw)
    monkeypatch.setattr(poly_trt, "EngineBytesFromNetwork", lambda network, config: lambda: built.append(config) or b"plan")
    runner = TensorRTRunner.from_onnx(trivial_if_chain((3, 8, 8), 1, 17), fp16=True)
    assert not built
    with runner:
        assert built == [{"fp16": True, "int8": False}]
        assert list(runner.infer({"input": np.zeros((1, 3, 8, 8), np.float32)})) == ["output"]


def test_missing_tensorrt_and_pycuda_are_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(CosineGateError, match="TensorRT is not installed here, and the bench needs it"):
        TensorRTRunner(b"plan", purpose="the bench").activate()
    fake_engine_modules(monkeypatch, "8.5.2", set(), SHAPES)
    monkeypatch.setitem(sys.modules, "pycuda.autoinit", None)
    with pytest.raises(CosineGateError, match=r"'pycuda'.*pip3 install pycuda"):
        TensorRTRunner(b"plan").activate()


def test_importing_it_needs_neither_torch_nor_tensorrt_nor_pycuda():
    code = ("import sys\nfor name in ('torch', 'tensorrt', 'pycuda', 'onnxruntime'): sys.modules[name] = None\n"
            "import cosinegate.runtime.tensorrt_backend\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
