"""deploy/build_engine.py off the device: TensorRT-absent path, settings from the version guards, bad inputs."""

import importlib.util
from pathlib import Path

import pytest

from conftest import run_script

import cosinegate.cli.build_engine as build_engine  # noqa: E402

from cosinegate.errors import CosineGateError  # noqa: E402
from cosinegate.trt import build as trt_build  # noqa: E402
from cosinegate.trt.targets import HostInfo, load_target  # noqa: E402

HAS_TRT = importlib.util.find_spec("tensorrt") is not None


@pytest.fixture(autouse=True)
def no_tensorrt(monkeypatch):
    """Behave as on a machine without TensorRT or GPU, whatever this one has."""
    monkeypatch.setattr(trt_build, "detect_host", lambda: HostInfo("x86_64", None, None))


@pytest.mark.skipif(HAS_TRT, reason="checks the TensorRT-absent message")
def test_require_engine_fails_without_tensorrt(tiny_checkpoint, tmp_path):
    done = run_script("deploy/build_engine.py", "--target", "jetson-orin", "--checkpoint", tiny_checkpoint,
                      "--out", tmp_path / "out", "--require-engine")
    assert done.returncode == 2
    assert "require-engine" in done.stderr and "Traceback" not in done.stderr
    # where TensorRT is missing, the fix names its bindings (board walkthrough: "run on the device" on the device);
    # JetPack's only for a Jetson target
    assert "(TensorRT is not installed here); run it on the device, in JetPack's python3 with TensorRT's bindings (sudo apt " \
           "install python3-libnvinfer)." in done.stderr, done.stderr
    assert not (tmp_path / "out").exists()
    desktop = run_script("deploy/build_engine.py", "--target", "desktop", "--checkpoint", tiny_checkpoint,
                         "--out", tmp_path / "out", "--require-engine")
    assert desktop.returncode == 2 and desktop.stderr.rstrip().endswith(
        "(TensorRT is not installed here); run it on the device, with TensorRT's Python bindings installed."), desktop.stderr


@pytest.mark.parametrize("argv, words", [
    (["--target", "jetson-nope"], "valid targets: desktop"),
    (["--target", "jetson-orin-nano", "--dla-core", "0"], "has no DLA"),
    (["--target", "jetson-orin", "--dla-core", "5"], "does not exist"),
    (["--target", "jetson-orin", "--opset", "19"], "opset 19"),
])
def test_bad_inputs(argv, words, tiny_checkpoint, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(CosineGateError, match=words):
        build_engine.main(argv + ["--checkpoint", str(tiny_checkpoint), "--out", str(out)])
    assert not list(out.glob("*bundle*")) if out.exists() else True


def test_int8_cache_path_needs_cache(tiny_checkpoint, tmp_path):
    with pytest.raises(CosineGateError, match="calibration cache .* not found"):
        build_engine.main(["--target", "jetson-orin", "--checkpoint", str(tiny_checkpoint), "--precision", "int8",
                           "--int8", "cache", "--form", "masked", "--calib-cache", str(tmp_path / "none.cache"),
                           "--out", str(tmp_path / "o")])


def test_int8_onnx_without_cache(tmp_path):
    (tmp_path / "m.onnx").write_bytes(b"not read: refused before")
    with pytest.raises(CosineGateError, match="calibration data or a cache"):
        build_engine.main(["--target", "jetson-orin", "--onnx", str(tmp_path / "m.onnx"), "--precision", "int8"])


def test_onnx_without_tensorrt_here_is_refused_before_any_work(tmp_path):
    # the bundle written where no engine can be built needs the PyTorch reference, which only a checkpoint gives
    (tmp_path / "m.onnx").write_bytes(b"not read: refused before")
    with pytest.raises(CosineGateError, match="--onnx builds an engine only where TensorRT builds for jetson-orin"):
        build_engine.main(["--target", "jetson-orin", "--onnx", str(tmp_path / "m.onnx"), "--out", str(tmp_path / "o")])
    assert not (tmp_path / "o").exists()


def test_settings_follow_version_guards(tmp_path):
    orin = load_target("jetson-orin")
    s = trt_build.build_settings(orin, "10.3.0", "int8", "qdq")
    assert s.strongly_typed and not s.int8 and not s.fp16
    s = trt_build.build_settings(orin, "8.5.2", "int8", "qdq", fp32_layers=("block0/gate/fc1",))
    assert not s.strongly_typed and s.int8 and s.fp16 and s.fp32_layers == ("block0/gate/fc1",)
    s = trt_build.build_settings(orin, "8.6.2", "fp16", fp32_layers=("g",), dla_core=1, workspace_mib=512)
    assert s.fp16 and s.dla_core == 1 and s.gpu_fallback and s.workspace_mib == 512
    cache = tmp_path / "c.cache"
    cache.write_text("TRT-100300-MinMaxCalibration\ninput: 3c010a14\n")
    s = trt_build.build_settings(orin, "10.3.0", "int8", "cache", calib_cache=cache)
    assert s.calibrator == "minmax" and any("deprecated" in n for n in s.notes)
    with pytest.raises(CosineGateError, match="DLA reads only EntropyCalibrator2 caches and this cache is MinMax"):
        trt_build.build_settings(orin, "10.3.0", "int8", "cache", calib_cache=cache, dla_core=0)
    with pytest.raises(CosineGateError, match="strongly typed only"):
        trt_build.build_settings(orin, "11.0", "fp16")


def test_settings_per_release_int8_dla_cache_and_form(tmp_path):
    """Defects 4, 7, 10: cache of another release, INT8 on DLA per release, cache with the conditional graph."""
    orin = load_target("jetson-orin")
    with pytest.raises(CosineGateError, match="takes INT8 only from a calibration cache"):
        trt_build.build_settings(orin, "8.5.2", "int8", "qdq", dla_core=0)
    s = trt_build.build_settings(orin, "10.3.0", "int8", "qdq", dla_core=0, fp32_layers=("g",))
    assert not s.strongly_typed and s.int8 and s.fp16 and s.fp32_layers == ("g",)
    with pytest.raises(CosineGateError, match="no DLA support"):
        trt_build.build_settings(orin, "11.0", "int8", "qdq", dla_core=0)
    cache = tmp_path / "c.cache"
    cache.write_text("TRT-100300-EntropyCalibration2\ninput: 3c010a14\n")
    with pytest.raises(CosineGateError, match="written for TensorRT 10.3.0.*TensorRT would ignore it"):
        trt_build.build_settings(orin, "8.5.2.2", "int8", "cache", calib_cache=cache)
    assert trt_build.build_settings(orin, "10.3.0.30", "int8", "cache", calib_cache=cache, form="masked").calib_cache
    with pytest.raises(CosineGateError, match="If branch"):
        trt_build.build_settings(orin, "10.3.0", "int8", "cache", calib_cache=cache, form="conditional")


def test_gate_pins_are_float_layers_only(tmp_path):
    """Defect 6: the ONNX gate nodes that take or make bool are not pinned (trtexec and Polygraphy alike)."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Relu", ["x"], ["h"], name="block0/gate/relu"),
             helper.make_node("Greater", ["h", "zero"], ["d"], name="block0/gate/decision"),
             helper.make_node("Cast", ["d"], ["v"], name="block0/gate/value", to=TensorProto.FLOAT),
             helper.make_node("Add", ["v", "h"], ["y"], name="block0/add")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
                              [helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "g.onnx")
    assert trt_build.gate_layer_names(tmp_path / "g.onnx") == ("block0/gate/relu",)


@pytest.mark.skipif(HAS_TRT, reason="checks the TensorRT-absent message")
def test_build_engine_without_tensorrt(tmp_path):
    with pytest.raises(CosineGateError, match="TensorRT is not installed"):
        trt_build.build_engine(tmp_path / "m.onnx", tmp_path / "m.engine", None)


@pytest.mark.trt
@pytest.mark.skipif(not HAS_TRT, reason="needs TensorRT and a GPU matching a target profile")
def test_engine_build_on_device(tiny_checkpoint, tmp_path, monkeypatch):  # pragma: no cover - device only
    """On a board (or desktop) with TensorRT: build an fp32 engine of the host's target and pass parity."""
    import json

    from cosinegate.trt.manifest import engine_manifest_path
    from cosinegate.trt.targets import host_matches, list_targets

    monkeypatch.undo()  # the real host, not the no-TensorRT stand-in
    host = trt_build.detect_host()
    matching = [name for name in list_targets() if host_matches(load_target(name), host)[0]]
    if not matching:
        pytest.skip(f"no target profile matches this host ({host}); add one under engines/targets/")
    assert build_engine.main(["--target", matching[0], "--checkpoint", str(tiny_checkpoint), "--precision", "fp32",
                              "--out", str(tmp_path), "--require-engine"]) == 0
    engines = list(tmp_path.glob("*.engine"))
    assert len(engines) == 1
    assert json.loads(engine_manifest_path(engines[0]).read_text())["precision"] == "fp32"


def test_int8_cache_for_another_model_is_refused(tiny_checkpoint, tmp_path):
    """As calibrate --cache-in refuses it: a cache without scales for the graph's quantized tensors (reviewer finding)."""
    foreign = tmp_path / "foreign.cache"
    foreign.write_text("TRT-100300-EntropyCalibration2\nfoo: 3c000000\nbar: 3c000000\n")
    out = tmp_path / "o"
    with pytest.raises(CosineGateError, match="has no scale for .* made for another model"):
        build_engine.main(["--target", "jetson-orin", "--checkpoint", str(tiny_checkpoint), "--precision", "int8",
                           "--int8", "cache", "--form", "masked", "--calib-cache", str(foreign), "--out", str(out)])
    assert not out.exists() or not list(out.rglob("*bundle*"))


def test_quiet_prints_only_the_result(tiny_checkpoint, tmp_path, capsys):
    """--quiet: no data line, no stage notes, no instructions: the one result line (and nothing on stderr)."""
    out = tmp_path / "out"
    argv = ["--target", "jetson-orin", "--checkpoint", str(tiny_checkpoint), "--out", str(out), "--select", "conditional"]
    assert build_engine.main([*argv, "--quiet"]) == 0
    printed = capsys.readouterr()
    lines = printed.out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("wrote the device bundle "), printed.out
    bundle, archive = lines[0][len("wrote the device bundle "):].split(" and ")
    assert Path(bundle).is_dir() and Path(archive).is_file()
    assert printed.err == ""
    assert build_engine.main([*argv, "--verbose"]) == 0  # again: every stage reused, said at the default level
    assert "reused" in capsys.readouterr().out


def test_a_checkpoint_folder_is_named_before_any_output_line(tmp_path, capsys):
    """New-user audit: build-engine --checkpoint RUN_FOLDER said "not found" (evaluate, parity and calibrate say "is a
    folder; pass RUN/best.pt"), after an "output: ..." line as if the work had begun."""
    (tmp_path / "run").mkdir()
    with pytest.raises(CosineGateError, match=r"checkpoint .*run is a folder; pass the file in it \(e.g. .*best.pt\)"):
        build_engine.main(["--target", "jetson-orin", "--checkpoint", str(tmp_path / "run"), "--out", str(tmp_path / "o")])
    assert "output:" not in capsys.readouterr().out and not (tmp_path / "o").exists()
