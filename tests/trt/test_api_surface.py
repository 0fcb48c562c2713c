"""Every TensorRT name the code touches exists in each release whose version-guarded branch uses it.

Evidence: tests/data/trt_api/<release>.txt, the names of the official Python bindings of 8.6.1,
10.3.0, 10.16.1, 11.0.0 and 11.4.0 (wheel strings) and of 8.5.2 (pyCore.cpp etc. at tag 8.5.2), made
by scripts/trt_evidence.py (tests/data/README.md). The code is driven with a recording stand-in for
``tensorrt`` (tests/trt_recorder.py) reporting each release's version, so the guards of trtversion.py
pick that release's branch; the names it reads, sets or calls, plus the names Polygraphy touches for
each CreateConfig/NetworkFromOnnxPath argument it is given, must all be in that release's list.

Profile releases map onto the evidence by major.minor: JetPack 5.1 = 8.5.2, JetPack 6.0's 8.6.2 = the
8.6.1 bindings (same 8.6 API), JetPack 6.1/6.2 = 10.3.0; desktop "10"/"10.15" lie between 10.3.0 and
10.16.1 (both checked), "11" = 11.0.0 and 11.4.0.
"""

import sys
from pathlib import Path

import numpy as np
import polygraphy.backend.trt as poly_trt
import pytest

from trt_recorder import Recorder, fake_engine_modules, fake_layer, fake_tensorrt

from cosinegate.errors import CosineGateError
from cosinegate.runtime.tensorrt_backend import TensorRTRunner
from cosinegate.trt import build
from cosinegate.trt.targets import load_target
from cosinegate.trtversion import calibration_cache_header, parse_version

DATA = Path(__file__).parents[1] / "data" / "trt_api"
RELEASES = sorted((p.stem for p in DATA.glob("*.txt")), key=lambda v: parse_version(v))
# TensorRT methods Polygraphy's Calibrator overrides (TensorRT calls them through the base class).
CALIBRATOR_OVERRIDES = ("get_batch", "get_batch_size", "read_calibration_cache", "write_calibration_cache")
BUILDS = [("fp32", None), ("fp16", None), ("int8", "qdq"), ("int8", "cache")]


# The TensorRT names each CreateConfig / NetworkFromOnnxPath argument makes Polygraphy touch
# (polygraphy/backend/trt/config.py and loader.py, 0.49-0.53); the test below checks
# them against the bindings of every release whose settings produce the argument.
POLYGRAPHY_TRT_NAMES = {
    "fp16": ("BuilderFlag", "FP16"),
    "int8": ("BuilderFlag", "INT8"),
    "calibrator": ("int8_calibrator",),
    "precision_constraints": ("BuilderFlag", "OBEY_PRECISION_CONSTRAINTS"),
    "memory_pool_limits": ("MemoryPoolType", "WORKSPACE", "set_memory_pool_limit"),
    "builder_optimization_level": ("builder_optimization_level",),
    "load_timing_cache": ("create_timing_cache", "set_timing_cache"),
    "use_dla": ("DeviceType", "DLA", "default_device_type", "DLA_core"),
    "allow_gpu_fallback": ("BuilderFlag", "GPU_FALLBACK"),
    "strongly_typed": ("NetworkDefinitionCreationFlag", "STRONGLY_TYPED"),
}


def evidence(release):
    return {line.strip() for line in (DATA / f"{release}.txt").read_text().splitlines() if line and not line.startswith("#")}


def test_evidence_covers_the_releases_the_profiles_name():
    assert RELEASES == ["8.5.2", "8.6.1", "10.3.0", "10.16.1", "11.0.0", "11.4.0"]
    for name in ("jetson-orin", "jetson-xavier-nx", "desktop"):
        for release in load_target(name).tensorrt:
            family = release.version.parts[:2]
            covered = [r for r in RELEASES if parse_version(r).parts[: len(family)] == family]
            between = parse_version(RELEASES[0]) <= release.version <= parse_version(RELEASES[-1])
            assert covered or between, release.version


class Loaders:
    """Polygraphy's lazy loaders replaced by stand-ins that record what build_engine hands them."""

    def __init__(self, log, trt):
        self.kwargs, self.log, self.trt = {}, log, trt

    def install(self, monkeypatch):
        monkeypatch.setattr(poly_trt, "NetworkFromOnnxPath", self.network_from_onnx)
        monkeypatch.setattr(poly_trt, "PostprocessNetwork", self.postprocess_network)
        monkeypatch.setattr(poly_trt, "CreateConfig", self.create_config)
        monkeypatch.setattr(poly_trt, "PostprocessConfig", self.postprocess_config)
        monkeypatch.setattr(poly_trt, "EngineFromNetwork", lambda network, config, **kw: (network, config))
        monkeypatch.setattr(poly_trt, "SaveEngine", lambda engine, path: lambda: None)

    def network_from_onnx(self, path, strongly_typed=None):
        if strongly_typed:
            self.kwargs["strongly_typed"] = True
        return "network"

    def postprocess_network(self, network, func, name=None):
        f32, boolean = self.trt.float32, self.trt.bool
        layers = [fake_layer(self.log, "block0/gate/fc", [f32], [f32]),
                  fake_layer(self.log, "block0/gate/decision", [f32], [boolean]),
                  fake_layer(self.log, "block0/conv1", [f32], [f32])]
        func(layers)
        return network

    def create_config(self, **kwargs):
        self.kwargs.update(kwargs)
        return "config"

    def postprocess_config(self, config, func):
        func(None, None, Recorder(self.log, label="config"))
        return config


def touched_names(release, profile_name, precision, int8_path, dla_core, tmp_path, monkeypatch):
    """Names used by build_engine on ``release`` for this request, or None where the request is refused."""
    log = set()
    trt = fake_tensorrt(release, log)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    cache = tmp_path / "calibration.cache"
    cache.write_text(calibration_cache_header(release, "entropy2") + "\ninput: 3c010204\n")
    try:
        settings = build.build_settings(load_target(profile_name), release, precision, int8_path, cache, dla_core,
                                        fp32_layers=("block0/gate/fc", "block0/gate/decision"), form="masked")
    except CosineGateError:
        return None
    loaders = Loaders(log, trt)
    loaders.install(monkeypatch)
    log.clear()
    build.build_engine(tmp_path / "m.onnx", tmp_path / "m.engine", settings)
    names = set(log)
    for kwarg in loaders.kwargs:
        assert kwarg in POLYGRAPHY_TRT_NAMES, f"CreateConfig/NetworkFromOnnxPath argument {kwarg} has no TRT name mapping"
        names |= set(POLYGRAPHY_TRT_NAMES[kwarg])
    if "calibrator" in loaders.kwargs:
        calibrator_class = type(loaders.kwargs["calibrator"])
        assert all(name in calibrator_class.__dict__ for name in CALIBRATOR_OVERRIDES)
        names |= set(CALIBRATOR_OVERRIDES)
    names.discard("__version__")
    return names


def _cases():
    for release in RELEASES:
        profile = "desktop" if parse_version(release).major >= 11 else "jetson-orin"
        for precision, int8_path in BUILDS:
            for dla_core in (None, 0):
                yield release, profile, precision, int8_path, dla_core


@pytest.mark.parametrize("release, profile, precision, int8_path, dla_core", list(_cases()))
def test_build_engine_uses_only_names_the_release_has(release, profile, precision, int8_path, dla_core, tmp_path, monkeypatch):
    if dla_core is not None and not load_target(profile).dla_cores:
        pytest.skip("target without DLA")
    names = touched_names(release, profile, precision, int8_path, dla_core, tmp_path, monkeypatch)
    if names is None:
        pytest.skip("request refused on this release (tested in test_build_engine / test_trtexec)")
    missing = sorted(names - evidence(release))
    assert not missing, f"TensorRT {release} bindings lack {missing}"


def test_the_builds_that_touch_most_are_not_skipped(tmp_path, monkeypatch):
    """The cache build on 8.5.2 and the Q/DQ build on 11.4.0 do run (the parametrized test skips refusals)."""
    old = touched_names("8.5.2", "jetson-orin", "int8", "cache", None, tmp_path, monkeypatch)
    assert {"IInt8EntropyCalibrator2", "set_output_type", "precision"} <= old
    assert "builder_optimization_level" not in old
    new = touched_names("11.4.0", "desktop", "int8", "qdq", None, tmp_path, monkeypatch)
    assert "STRONGLY_TYPED" in new and not {"set_output_type", "OBEY_PRECISION_CONSTRAINTS"} & new


@pytest.mark.parametrize("release", RELEASES)
def test_tensorrt_runner_uses_only_names_the_release_has(release, monkeypatch):
    log = set()
    trt, _ = fake_engine_modules(monkeypatch, release, log, {"input": (1, 3, 32, 32), "logits": (1, 10), "gates": (1, 9)},
                                 dla_cores=1)
    with TensorRTRunner(b"", dla_core=0) as runner:
        runner.infer({"input": np.zeros((1, 3, 32, 32), np.float32)})
    names = log - {"__version__"}
    assert {"execute_async_v3", "set_tensor_address", "num_io_tensors", "float32", "DLA_core"} <= names
    assert "nptype" not in names
    missing = sorted(names - evidence(release))
    assert not missing, f"TensorRT {release} bindings lack {missing}"


def test_pins_skip_layers_that_touch_bool():
    """Defect 6: TensorRT refuses a float precision on a bool layer (gate/decision, gate/cond, the Cast)."""
    log = set()
    trt = fake_tensorrt("10.3.0", log)
    fc = fake_layer(log, "block0/gate/fc", [trt.float32], [trt.float32])
    decision = fake_layer(log, "block0/gate/decision", [trt.float32], [trt.bool])
    value = fake_layer(log, "block0/gate/value", [trt.bool], [trt.float32])
    build.pin_float_layers([fc, decision, value], {"block0/gate/fc", "block0/gate/decision", "block0/gate/value"}, trt)
    assert fc._values["precision"] is trt.float32
    assert "precision" not in decision._values and "precision" not in value._values


def test_calibrator_reads_the_cache_without_data(tmp_path):
    """Defect 2: Polygraphy's Calibrator iterates its loader on creation; the cache-only one must not need data."""
    log = set()
    cache = tmp_path / "calibration.cache"
    cache.write_text("TRT-8502-EntropyCalibration2\ninput: 3c010204\n")
    calibrator = build.cache_reading_calibrator(cache, "entropy2", fake_tensorrt("8.5.2", log))
    assert calibrator.read_calibration_cache() == cache.read_bytes()
    assert calibrator.get_batch(["input"]) is None  # no data: TensorRT cannot calibrate on made-up batches
