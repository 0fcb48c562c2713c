"""cosinegate.lazy: optional modules imported on first use, a missing one named with the extra that installs it."""

import sys

import pytest

from cosinegate.errors import CosineGateError
from cosinegate.lazy import lazy_import, require


def test_lazy_module_imports_on_first_attribute(monkeypatch):
    monkeypatch.delitem(sys.modules, "colorsys", raising=False)
    colorsys = lazy_import("colorsys", "deploy")
    assert "colorsys" not in sys.modules
    assert colorsys.rgb_to_hsv(1.0, 0.0, 0.0) == (0.0, 1.0, 1.0)
    assert "colorsys" in sys.modules


def test_missing_module_names_the_extra_in_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` raises ImportError
    ort = lazy_import("onnxruntime", "deploy", "the ONNX Runtime runner")
    with pytest.raises(CosineGateError) as info:
        ort.InferenceSession
    message = str(info.value)
    assert "\n" not in message and "the ONNX Runtime runner" in message and "pip install onnxruntime (or '.[deploy]' in the toolkit's checkout)" in message


def test_a_submodule_names_its_package_and_every_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pycuda.driver", None)  # the full name: a package imported before stays cached
    with pytest.raises(CosineGateError, match=r"'pycuda'.*pip3 install pycuda"):
        require("pycuda.driver", "trt")
    monkeypatch.setitem(sys.modules, "polygraphy.backend.trt", None)
    # the device extra's modules: the extra, whose numpy pins suit JetPack (a bare pip install onnx may pull numpy 2)
    with pytest.raises(CosineGateError, match=r"pip install '.\[deploy\]' or '.\[device\]' in the toolkit's checkout \(its numpy pins "
                                              r"suit JetPack's TensorRT\)\.$"):
        require("polygraphy.backend.trt", ("deploy", "device"))


def test_an_unknown_extra_is_a_programming_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(ValueError, match="unknown extra"):
        require("tensorrt", "tensorrt")


def test_setup_cfg_has_the_extras_the_messages_name():
    import configparser

    from conftest import ROOT
    from cosinegate.lazy import EXTRAS

    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    assert set(EXTRAS) <= set(config["options.extras_require"])
