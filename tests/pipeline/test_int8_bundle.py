"""Issue 13: a masked INT8 bundle builds the masked Q/DQ graph, and its device check can fail."""

import json
import shutil
import subprocess

import numpy as np
import pytest
from conftest import PYTHON, make_dynamic_checkpoint, script_env, widest_gap_split

import cosinegate.cli.build_engine as build_engine  # noqa: E402

from cosinegate.errors import CosineGateError  # noqa: E402
from cosinegate.pipeline.plan import resolve_precision  # noqa: E402
from cosinegate.trt import build as trt_build  # noqa: E402
from cosinegate.trt.targets import HostInfo  # noqa: E402

POLYGRAPHY = shutil.which("polygraphy", path=str(__import__("pathlib").Path(PYTHON).parent))


@pytest.fixture(scope="module")
def masked_int8(tiny_checkpoint, test_images, tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setattr(trt_build, "detect_host", lambda: HostInfo("x86_64", None, None))
    out = tmp_path_factory.mktemp("engines")
    ckpt = make_dynamic_checkpoint(tiny_checkpoint, out / "dyn.pt", test_images, split=widest_gap_split)
    report = out / "bundle.json"
    assert build_engine.main(["--target", "jetson-orin", "--checkpoint", str(ckpt), "--form", "masked", "--int8", "qdq",
                              "--out", str(out), "--json", str(report)]) == 0
    yield out / "dyn-masked-int8-bundle", json.loads(report.read_text())
    mp.undo()


def device_check(bundle, graph, tmp_path):
    """`polygraphy run GRAPH --onnxrt` on the bundle's inputs, then the bundle's own check_parity.py: (code, stdout)."""
    outputs = tmp_path / "outputs.json"
    run = subprocess.run([POLYGRAPHY, "run", str(graph), "--onnxrt", "--data-loader-script", str(bundle / "check_parity.py"),
                          "--save-outputs", str(outputs)], capture_output=True, text=True, env=script_env())
    assert run.returncode == 0, run.stdout + run.stderr
    done = subprocess.run([PYTHON, str(bundle / "check_parity.py"), str(outputs)], capture_output=True, text=True,
                          env=script_env(), cwd=tmp_path)
    return done.returncode, done.stdout + done.stderr


def flat_qdq(bundle):
    """The flat Q/DQ twin: in the work folder's calibration, not in the bundle (the board builds the masked one)."""
    return bundle.parent / ".work" / "dyn" / "calibration" / "model.qdq.onnx"


def test_masked_int8_bundle_builds_the_masked_qdq_graph(masked_int8):
    bundle, manifest = masked_int8
    assert manifest["build_onnx"] == "calibration/model.qdq.masked.onnx" and manifest["precision"] == "int8"
    assert "calibration/model.qdq.masked.onnx" in (bundle / "build_on_device.sh").read_text()
    ref = manifest["reference"]  # the checkpoint's test split, every dynamic gate seen both ways
    assert ref["images"] == 100 and ref["dynamic_blocks_seen_one_way"] == []
    assert all(b["ran"] + b["skipped"] == 100 for b in ref["blocks"])
    assert manifest["data"]["source"] == "cifar10" and manifest["parity_profile"]["profile"] == "int8"
    assert (bundle / "labels.txt").read_text().split() == manifest["card"]["classes"]
    assert manifest["card"]["normalization"]["std"] and manifest["card"]["gate_threshold"]["on"] == "logit"
    preview = manifest["int8_preview_onnxrt"]  # the bundle's own check, run here on ONNX Runtime
    assert preview["passed"] and preview["graph"] == "model.qdq.masked.onnx" and preview["num_samples"] == 100
    # the README's ONNX Runtime line names the graph the engine is built from (it named the float model.masked.onnx),
    # and that line runs
    line = next(x for x in (bundle / "README.md").read_text().splitlines() if "run_engine.py --onnx" in x)
    assert f"--onnx {bundle.name}/calibration/model.qdq.masked.onnx photos/" in line and "built from" in line
    images = bundle.parent / "photos.npy"
    np.save(images, np.zeros((2, 32, 32, 3), np.uint8))
    done = subprocess.run([PYTHON, str(bundle / "run_engine.py"), "--onnx", str(bundle / "calibration" / "model.qdq.masked.onnx"),
                           str(images)], capture_output=True, text=True, env=script_env())
    assert done.returncode == 0 and "this masked graph computes every gated block" in done.stdout, done.stderr


def test_int8_preview_warns_when_the_graph_fails_the_check(masked_int8, capsys):
    """The flat Q/DQ twin runs every block, so the bundle's check fails it; the preview says so before shipping."""
    from cosinegate.pipeline.bundle import int8_preview
    from cosinegate.pipeline.plan import Artifacts, DeploySettings

    bundle, _ = masked_int8
    art = Artifacts("dyn", bundle / "model.masked.onnx", qdq_twin=flat_qdq(bundle),
                    inputs=bundle / "inputs.npz", reference=bundle / "reference.json")
    preview = int8_preview(DeploySettings("jetson-orin", precision="int8", form="masked"), art)
    printed = capsys.readouterr()
    assert not preview["passed"] and preview["top1_agreement"] < 0.97, preview
    assert "warning: the bundle's INT8 check fails here already" in printed.err and "INT8 check" not in printed.out
    assert int8_preview(DeploySettings("jetson-orin", precision="fp16"), art) is None


def test_device_check_passes_the_bundle_graph_and_fails_the_flat_twin(masked_int8, tmp_path):
    bundle, manifest = masked_int8
    code, printed = device_check(bundle, bundle / manifest["build_onnx"], tmp_path)
    assert code == 0 and "parity PASSED (int8" in printed, printed
    code, printed = device_check(bundle, flat_qdq(bundle), tmp_path)  # every block runs
    assert code == 1 and "parity FAILED" in printed and "top-1 agreement" in printed, printed


def test_masked_batch4_int8_cache_bundle_previews_image_by_image(masked_int8, tmp_path, monkeypatch):
    """The Q/DQ graphs have batch 1; a batch-4 masked bundle's reference is fed to them one image at a time, and
    --int8 qdq, whose engine would be that batch-1 graph, is refused for batch 4 in one line."""
    bundle, _ = masked_int8
    monkeypatch.setattr(trt_build, "detect_host", lambda: HostInfo("x86_64", None, None))
    ckpt = next(bundle.parent.glob("dyn.pt"))
    report = tmp_path / "b4.json"
    assert build_engine.main(["--target", "jetson-orin", "--checkpoint", str(ckpt), "--form", "masked", "--batch", "4",
                              "--int8", "cache", "--out", str(tmp_path), "--json", str(report)]) == 0
    preview = json.loads(report.read_text())["int8_preview_onnxrt"]
    assert preview["graph"] == "model.qdq.masked.onnx" and preview["passed"] and preview["num_samples"] == 100, preview
    # the board side of batch 4: check_parity.py feeds its batches of 4 to the batch-4 graph the engine is built from
    # (here on ONNX Runtime, the float graph, which the int8 profile admits) and judges the batched outputs
    batch4 = tmp_path / "dyn-masked-int8-bundle"
    manifest = json.loads((batch4 / "manifest.json").read_text())
    assert manifest["batch"] == 4 and manifest["build_onnx"] == "model.masked.onnx"
    code, printed = device_check(batch4, batch4 / manifest["build_onnx"], tmp_path)
    assert code == 0 and "parity PASSED (int8" in printed and "100 images" in printed, printed
    with pytest.raises(CosineGateError, match="--int8 qdq builds the calibrated Q/DQ graph, which has batch 1"):
        build_engine.main(["--target", "jetson-orin", "--checkpoint", str(ckpt), "--form", "masked", "--batch", "4",
                           "--int8", "qdq", "--out", str(tmp_path / "q")])
    assert not (tmp_path / "q").exists()


def test_int8_path_implies_int8_and_refuses_a_contradiction(dyn_checkpoint, tmp_path):
    with pytest.raises(CosineGateError, match="--int8 qdq is an INT8 path but --precision fp16"):
        build_engine.main(["--target", "jetson-orin", "--checkpoint", str(dyn_checkpoint), "--int8", "qdq",
                           "--precision", "fp16", "--out", str(tmp_path)])
    assert resolve_precision(None, "qdq") == "int8" and resolve_precision(None, None) == "fp16"


def test_check_parity_names_a_bad_outputs_file_in_one_line(tmp_path):
    """Reviewer finding: a missing outputs file, an empty {} or outputs without gates gave tracebacks."""
    from conftest import ROOT

    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps({"profile": "fp32", "min_top1_agreement": 1.0, "min_gate_agreement": 1.0}))
    (tmp_path / "empty.json").write_text("{}")
    for bad, said in ((tmp_path / "missing.json", "not found"), (tmp_path / "empty.json", "holds no Polygraphy outputs")):
        done = subprocess.run([PYTHON, str(ROOT / "cosinegate/parity/device_check.py"), str(bad), "--reference", str(bad),
                               "--profile", str(profile)], capture_output=True, text=True, env=script_env())
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert done.stderr.startswith(f"error: {bad} {said}") and len(done.stderr.splitlines()) == 1
