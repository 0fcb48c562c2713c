"""Parity: PyTorch reference vs ONNX Runtime through Polygraphy, for every form; failures are caught and named."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import REAL_CIFAR, make_dynamic_checkpoint, requires_real_cifar
from onnx import numpy_helper

from cosinegate.errors import CosineGateError
from cosinegate.onnx import export_checkpoint
from cosinegate.parity import FP16, FP32, INT8, PROFILES, agreement_report, run_parity
from cosinegate.parity.compare import summarize
from cosinegate.training.checkpoint import model_from_checkpoint

POLYGRAPHY = Path(sys.executable).with_name("polygraphy")
SAMPLES = 24


@pytest.fixture(scope="module")
def model(dyn_checkpoint):
    return model_from_checkpoint(dyn_checkpoint)[0]


def export(checkpoint, path, **kw):
    export_checkpoint(checkpoint, path, **kw)
    return onnx.load(str(path))


def perturb_gate_bias(graph, block, delta, path):
    """Shift one gate's control bias so its decisions flip (the graph otherwise unchanged)."""
    for tensor in graph.graph.initializer:
        if tensor.name == f"block{block}/gate/control/bias":
            tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor) + np.float32(delta), tensor.name))
    onnx.save(graph, str(path))
    return graph


FORMS = {
    "conditional-auto": dict(form="conditional"),
    "conditional-all": dict(form="conditional", policy="conditional-all"),
    "masked": dict(form="masked", batch=4),
    "flat": dict(form="flat"),
}


@pytest.mark.parametrize("name", list(FORMS))
def test_parity_passes_for_every_form(name, dyn_checkpoint, model, test_images, tmp_path):
    path = tmp_path / "m.onnx"
    report = run_parity(model, export(dyn_checkpoint, path, **FORMS[name]), path, test_images, samples=SAMPLES)
    assert report["passed"], report["summary"]
    assert report["gate_agreement"] == 1.0 and report["top1_agreement"] == 1.0 and report["flipped_blocks"] == []
    assert report["max_abs_err"]["gates"] == 0.0 and report["max_abs_err"]["logits"] < FP32.logits_atol
    assert report["num_samples"] == SAMPLES
    if name == "conditional-auto":
        assert report["static_policy_disagreement"] == {"block0": 0.0, "block1": 0.0}


def test_perturbed_gate_bias_fails_parity_and_names_the_block(dyn_checkpoint, model, test_images, tmp_path):
    path = tmp_path / "bad.onnx"
    graph = perturb_gate_bias(export(dyn_checkpoint, tmp_path / "m.onnx"), 3, 50.0, path)
    report = run_parity(model, graph, path, test_images, samples=SAMPLES)
    assert not report["passed"]
    assert report["flipped_blocks"][0] == "block3" and report["gate_agreement_per_block"][3] < 1.0
    assert "block3" in report["summary"] and "FAILED" in report["summary"]


def test_fp32_parity_fails_on_logits_alone(dyn_checkpoint, model, test_images, tmp_path):
    """Every class logit moved by 1e-2 (argmax and gates unchanged): the fp32 profile fails on Polygraphy's logit
    comparison alone; the INT8 profile, which reads decisions only, passes."""
    path = tmp_path / "shifted.onnx"
    graph = export(dyn_checkpoint, tmp_path / "m.onnx")
    bias = next(t for t in graph.graph.initializer if t.name == "head/fc/bias")
    bias.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(bias) + np.float32(1e-2), bias.name))
    onnx.save(graph, str(path))
    report = run_parity(model, graph, path, test_images, samples=SAMPLES)
    assert report["top1_agreement"] == 1.0 and report["gate_agreement"] == 1.0
    assert report["max_abs_err"]["logits"] > FP32.logits_atol
    assert not report["passed"] and not report["polygraphy_passed"] and "FAILED" in report["summary"]
    assert run_parity(model, graph, path, test_images, samples=SAMPLES, tolerance=INT8)["passed"]


def test_static_policy_disagreement_is_measured(dyn_checkpoint, model, test_images, tmp_path):
    """Declaring the dynamic block 2 always-run: parity follows the policy, and reports how often PyTorch disagrees."""
    path = tmp_path / "m.onnx"
    rates = [0.0, 1.0, 0.0] + [0.5] * 6
    report = run_parity(model, export(dyn_checkpoint, path, skip_rates=rates), path, test_images, samples=SAMPLES)
    assert report["passed"], report["summary"]
    assert 0.0 < report["static_policy_disagreement"]["block2"] < 1.0


def test_int8_profile_thresholds():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(200, 10)).astype(np.float32)
    gates = rng.integers(0, 2, (200, 9)).astype(np.float32)
    ref = {"logits": logits, "gates": gates}
    one_top1_flip = {"logits": logits.copy(), "gates": gates}
    one_top1_flip["logits"][0, logits[0].argmax()] -= 100.0
    own, kinds = gates, ["dynamic"] * 9
    assert summarize(ref, one_top1_flip, own, kinds, INT8, polygraphy_passed=False)["passed"]
    assert not summarize(ref, one_top1_flip, own, kinds, FP32, polygraphy_passed=False)["passed"]
    many_flips = {"logits": logits.copy(), "gates": gates}
    many_flips["logits"][np.arange(10), logits[:10].argmax(1)] -= 100.0  # 95% top-1 agreement
    assert not summarize(ref, many_flips, own, kinds, INT8, polygraphy_passed=False)["passed"]
    flipped = {"logits": logits, "gates": gates.copy()}
    flipped["gates"][:20, 0] = 1 - flipped["gates"][:20, 0]  # 20 of 1800 decisions: 98.9% agreement
    report = summarize(ref, flipped, own, kinds, INT8, polygraphy_passed=True)
    assert not report["passed"] and report["flipped_blocks"] == ["block0"]


def test_saved_reference_reproduces_with_polygraphy_cli(dyn_checkpoint, model, test_images, tmp_path):
    path = tmp_path / "model.onnx"
    graph = export(dyn_checkpoint, path)
    ref, inputs = tmp_path / "ref.json", tmp_path / "inputs.json"
    run_parity(model, graph, path, test_images, samples=8, save_inputs=inputs, save_reference=ref)

    def polygraphy_run(onnx_path):
        """The device command of deploy/parity.py's docstring, with --onnxrt instead of --trt."""
        command = [str(POLYGRAPHY), "run", str(onnx_path), "--onnxrt", "--load-inputs", str(inputs), "--load-outputs", str(ref),
                   "--atol", "logits:1e-4", "gates:0", "--rtol", "logits:1e-3", "gates:0"]
        return subprocess.run(command, capture_output=True, text=True, timeout=120)

    good = polygraphy_run(path)
    assert good.returncode == 0, good.stdout[-2000:] + good.stderr[-2000:]
    perturb_gate_bias(graph, 3, 50.0, tmp_path / "bad.onnx")
    assert polygraphy_run(tmp_path / "bad.onnx").returncode != 0


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_trt_backend_without_tensorrt_is_a_clear_error(dyn_checkpoint, model, test_images, tmp_path):
    path = tmp_path / "m.onnx"
    with pytest.raises(CosineGateError, match="TensorRT"):
        run_parity(model, export(dyn_checkpoint, path), path, test_images, backend="trt", samples=2)


def test_mismatched_checkpoint_is_refused(tiny_checkpoint, dyn_checkpoint, test_images, tmp_path):
    path = tmp_path / "m.onnx"
    graph = export(dyn_checkpoint, path)
    paper = make_dynamic_checkpoint(tiny_checkpoint, tmp_path / "paper.pt", test_images, "paper")
    with pytest.raises(CosineGateError, match="exported from a predictive model"):
        run_parity(model_from_checkpoint(paper)[0], graph, path, test_images, samples=2)


@requires_real_cifar
@pytest.mark.parametrize("name", list(FORMS))
def test_parity_on_real_cifar_images(name, dyn_checkpoint, model, tmp_path, monkeypatch):
    import conftest

    from cosinegate.data import load_dataset

    monkeypatch.setenv("COSINEGATE_CACHE", str(conftest.USER_CACHE))
    test = load_dataset("imagefolder", REAL_CIFAR)[1]
    path = tmp_path / "m.onnx"
    report = run_parity(model, export(dyn_checkpoint, path, **FORMS[name]), path, test, samples=32)
    assert report["passed"], report["summary"]


def test_engine_profiles_by_precision():

    rng = np.random.default_rng(1)
    ref = {"logits": rng.normal(size=(100, 10)).astype(np.float32), "gates": rng.integers(0, 2, (100, 9)).astype(np.float32)}
    fp16_like = {"logits": ref["logits"] + 1e-3, "gates": ref["gates"].copy()}
    assert agreement_report(ref, fp16_like, FP16)["passed"] and not agreement_report(ref, fp16_like, PROFILES["fp32"])["passed"]
    fp16_like["gates"][:10, 4] = 1 - fp16_like["gates"][:10, 4]  # 10 of 900 decisions flipped: 98.9%
    report = agreement_report(ref, fp16_like, FP16)
    assert not report["passed"] and report["gate_agreement"] == pytest.approx(890 / 900)


def test_every_report_takes_the_verdict_of_check_parity():
    """One rule for the desktop reports and the board's check_parity.py: a reference logit of exactly 0 under INT8's
    unbounded profile (inf * 0 was nan: every INT8 check of such a reference failed), FP16's logit bound in the
    export-side summary (it was dropped), and NaN logits (no profile lets them pass)."""
    from cosinegate.parity import device_check

    rng = np.random.default_rng(2)
    logits = rng.normal(size=(50, 10))
    logits[0, 3] = 0.0
    ref = {"logits": logits, "gates": rng.integers(0, 2, (50, 9)).astype(np.float32)}
    own, kinds = ref["gates"], ["dynamic"] * 9
    assert agreement_report(ref, dict(ref), INT8)["passed"]
    off = {"logits": logits + 0.1 * np.sign(logits), "gates": ref["gates"]}  # same argmax, 0.1 off: beyond FP16's 5e-2
    for report in (summarize(ref, off, own, kinds, FP16, polygraphy_passed=True), agreement_report(ref, off, FP16)):
        assert not report["passed"] and not report["logits_within_tolerance"] and report["top1_agreement"] == 1.0
    nan = {"logits": logits.copy(), "gates": ref["gates"]}
    nan["logits"][7] = np.nan
    assert not agreement_report(ref, nan, INT8)["passed"]
    expected = {"fp32": (True, False, False), "fp16": (True, False, False), "int8": (True, True, False)}
    for name, tolerance in PROFILES.items():  # the desktop report and the board's script, on the same outputs
        assert [agreement_report(ref, o, tolerance)["passed"] for o in (dict(ref), off, nan)] == list(expected[name])
        assert [device_check.check(ref, o, tolerance.profile())["passed"] for o in (dict(ref), off, nan)] == list(expected[name])


def test_parity_refuses_a_cpu_onnxruntime_graph_built_elsewhere(tmp_path):
    import json

    from cosinegate.artifacts import sha256_file
    from cosinegate.manifests import OrtEngineManifest
    from cosinegate.parity.compare import graph_runner
    from cosinegate.runtime.ort_engine import cpu_identity

    graph = tmp_path / "m.onnx"
    graph.write_bytes(b"a graph built on another machine")
    manifest = OrtEngineManifest(engine_sha256=sha256_file(graph), onnxruntime_version="0.0.1", cpu=cpu_identity())
    (tmp_path / "m.onnx.json").write_text(json.dumps(manifest.to_json()))
    with pytest.raises(CosineGateError, match=r"cannot run here: built by ONNX Runtime 0\.0\.1.*--target cpu-onnxruntime") as exc:
        graph_runner(graph, "onnxrt")
    assert "\n" not in str(exc.value)


def test_saved_feeds_refuse_an_inputs_bomb_in_one_line(tmp_path):
    from test_device_check import npy_header_only, write_npz

    from cosinegate.parity.compare import saved_feeds

    path = write_npz(tmp_path / "inputs.npz", npy_header_only((10**7, 1024, 1024, 3)))  # 28.6 TiB declared, 1 KB file
    with pytest.raises(CosineGateError, match=r"is not a reference inputs \.npz \(images\.npy declares uint8") as exc:
        saved_feeds(path)
    assert "\n" not in str(exc.value)


def test_an_int8_report_is_strict_json_and_its_line_names_the_limits(dyn_checkpoint, model, test_images, tmp_path):
    """INT8 has no logit bound: the report says null (json.dumps(allow_nan=False) and JSON.parse take it; Infinity they
    refuse), and the one-line verdict names the minimums it was judged by, as check_parity.py does on the board."""
    import json

    path = tmp_path / "m.onnx"
    report = run_parity(model, export(dyn_checkpoint, path), path, test_images, samples=SAMPLES, tolerance=INT8)
    text = json.dumps(report, allow_nan=False)
    assert json.loads(text)["tolerance"]["logits_atol"] is None
    assert f"(min {INT8.min_top1})" in report["summary"] and f"(min {INT8.min_gate_agreement})" in report["summary"]
    assert "(bound: none)" in report["summary"]


def test_nan_outputs_fail_and_their_report_stays_strict_json():
    import json

    reference = {"logits": np.zeros((4, 10), np.float32), "gates": np.ones((4, 2), np.float32)}
    outputs = {"logits": np.full((4, 10), np.nan, np.float32), "gates": np.ones((4, 2), np.float32)}
    report = agreement_report(reference, outputs, FP32)
    assert not report["passed"] and report["max_abs_err"] == {"logits": None, "gates": 0.0}
    json.dumps(report, allow_nan=False)


def test_saved_polygraphy_files_are_checked_before_polygraphy_decodes_them(tmp_path):
    """Diff review: a bundle's reference.json reached RunResults.load (build-engine --bundle on the board) and saved
    feeds reached load_json with no check; an .npz payload there inflates past the file."""
    import base64
    import io
    import json

    import numpy as np
    import pytest

    from cosinegate.errors import CosineGateError
    from cosinegate.parity.compare import saved_feeds
    from cosinegate.pipeline.engine import saved_parity

    buf = io.BytesIO()
    np.savez(buf, x=np.zeros((1, 3, 32, 32), np.float32))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"input": {"array": base64.b64encode(buf.getvalue()).decode(), "polygraphy_class": "ndarray"}}]))
    with pytest.raises(CosineGateError, match="reference inputs .*bad.json is refused \\(an array is not a .npy"):
        saved_feeds(bad)
    with pytest.raises(CosineGateError, match="reference outputs .*bad.json is refused \\(an array is not a .npy"):
        saved_parity(None, [], bad, "fp32")
