"""Device bundle from a checkpoint: contents, hashes, script, printed instructions, reuse by hash."""

import shutil
import sys
import tarfile

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "deploy"))
import build_engine  # noqa: E402

from cosinegate.errors import CosineGateError  # noqa: E402
from cosinegate.trt import build as trt_build  # noqa: E402
from cosinegate.trt.bundle import device_script  # noqa: E402
from cosinegate.trt.manifest import verify_bundle  # noqa: E402
from cosinegate.trt.targets import HostInfo, list_targets, load_target  # noqa: E402


@pytest.fixture(scope="module")
def bundled(tiny_checkpoint, tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setattr(trt_build, "detect_host", lambda: HostInfo("x86_64", None, None))
    out = tmp_path_factory.mktemp("engines")
    ckpt = out / "tiny.pt"
    shutil.copy(tiny_checkpoint, ckpt)
    import contextlib
    import io

    first = io.StringIO()
    with contextlib.redirect_stdout(first):
        assert build_engine.main(["--target", "jetson-orin", "--checkpoint", str(ckpt), "--out", str(out)]) == 0
    second = io.StringIO()
    with contextlib.redirect_stdout(second):
        build_engine.main(["--target", "jetson-orin", "--checkpoint", str(ckpt), "--out", str(out)])
    yield out, ckpt, first.getvalue(), second.getvalue(), mp
    mp.undo()


def test_bundle_contents_and_hashes(bundled):
    out, _, printed, _, _ = bundled
    bundle = out / "tiny-bundle"
    manifest = verify_bundle(bundle)
    for name in ("model.conditional.onnx", "model.flat.onnx", "reference.json", "inputs.json", "jetson-orin.toml",
                 "build_on_device.sh"):
        assert name in manifest["files"], name
    assert manifest["target"] == "jetson-orin" and manifest["precision"] == "fp16"
    with tarfile.open(out / "tiny-bundle.tar.gz") as tar:
        assert "tiny-bundle/manifest.json" in tar.getnames()
    assert "scp" in printed and "build_on_device.sh" in printed and "--bundle tiny-bundle" in printed
    assert not [p for p in out.iterdir() if p.name.startswith(".tiny-bundle")]  # no temp left


def test_script_has_trtexec_and_python_path(bundled):
    out = bundled[0]
    script = (out / "tiny-bundle" / "build_on_device.sh").read_text()
    assert "trtexec --onnx=model.conditional.onnx --saveEngine=tiny-conditional-fp16-trt10.3.0-sm87.engine --fp16" in script
    from cosinegate.trt.build import gate_layer_names

    gates = gate_layer_names(out / "tiny-bundle" / "model.conditional.onnx")
    assert ("--precisionConstraints=obey" in script) == bool(gates)  # gate heads pinned fp32 when the graph has any
    assert "deploy/build_engine.py\" --bundle \"$BUNDLE\" --target jetson-orin" in script


def test_reuse_by_hash_and_rebuild(bundled, tmp_path):
    out, ckpt, first, second, _ = bundled
    assert "reused" not in first
    assert second.count("reused") == 7  # conditional, flat, reference; pruned and dense candidates and their references
    from cosinegate.training.checkpoint import load_checkpoint, save_checkpoint

    state = load_checkpoint(ckpt)
    state["epoch"] = state.get("epoch", 0) + 100
    changed = out / "tiny.pt"
    save_checkpoint(changed, **{k: v for k, v in state.items() if k != "format"})
    import contextlib
    import io

    third = io.StringIO()
    with contextlib.redirect_stdout(third):
        build_engine.main(["--target", "jetson-orin", "--checkpoint", str(changed), "--out", str(out)])
    assert "reused" not in third.getvalue()


def test_bundle_verification_refuses_damage(bundled, tmp_path):
    out = bundled[0]
    copy = tmp_path / "tiny-bundle"
    shutil.copytree(out / "tiny-bundle", copy)
    assert build_engine.main(["--target", "jetson-orin", "--bundle", str(copy)]) == 0
    with open(copy / "model.conditional.onnx", "ab") as handle:
        handle.write(b"x")
    with pytest.raises(CosineGateError, match="hash mismatch: model.conditional.onnx"):
        build_engine.main(["--target", "jetson-orin", "--bundle", str(copy)])
    (copy / "inputs.json").unlink()
    with pytest.raises(CosineGateError, match="missing: inputs.json"):
        verify_bundle(copy)


@pytest.mark.parametrize("target", list_targets())
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_trtexec_line_per_target_and_precision(target, precision, tmp_path):
    profile = load_target(target)
    cache = None
    if precision == "int8":
        cache = "calibration.cache"
    script = device_script(profile, "m", "conditional", precision, "cache" if precision == "int8" else None,
                           "model.conditional.onnx", cache, 1, ("block0/gate/fc",), calibrator="entropy2")
    for release in profile.tensorrt:
        assert f"--saveEngine=m-conditional-{precision}-trt{release.version}-sm" in script or "not possible" in script
    if precision == "fp16":
        assert "--fp16" in script
    if precision == "int8":
        assert "--calib=calibration.cache" in script or "not possible" in script
    minmax = device_script(profile, "m", "conditional", "int8", "cache", "model.conditional.onnx", "calibration.cache", 1,
                           (), calibrator="minmax")
    assert "trtexec --onnx" not in minmax and "MinMax" in minmax and "\npython3 " in minmax


def test_without_a_source_the_embedded_default_model_is_bundled(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    from cosinegate import defaults

    run = tmp_path / "runs" / "pipeline" / "balanced-resnet20"
    run.mkdir(parents=True)
    shutil.copy(tiny_checkpoint, run / "best.pt")
    monkeypatch.setattr(defaults, "DEFAULT_RUN", run)
    monkeypatch.setattr(trt_build, "detect_host", lambda: HostInfo("x86_64", None, None))
    assert build_engine.main(["--target", "jetson-orin", "--out", str(tmp_path / "engines")]) == 0
    verify_bundle(tmp_path / "engines" / "balanced-resnet20-bundle")
    assert "build_on_device.sh" in capsys.readouterr().out
