"""build_engine.py --select: candidates conditional / pruned / dense timed and scored, the fastest within tolerance."""

import json
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "deploy"))
import build_engine  # noqa: E402

from cosinegate.bench.candidates import choose  # noqa: E402
from cosinegate.errors import CosineGateError  # noqa: E402
from cosinegate.trt import build as trt_build  # noqa: E402
from cosinegate.trt.manifest import verify_bundle  # noqa: E402
from cosinegate.trt.targets import HostInfo  # noqa: E402


def cand(p50, acc):
    return {"latency_ms": {"p50": p50}, "accuracy": acc}


def test_choose_fastest_within_tolerance():
    c = {"conditional": cand(2.0, 0.90), "pruned": cand(1.5, 0.895), "dense": cand(1.2, 0.85)}
    assert choose(c, 0.01)[0] == "pruned"  # dense is faster but 5 pp below the conditional graph
    assert choose(c, 0.06)[0] == "dense"
    name, reason = choose(c, 0.0)
    assert name == "conditional" and "pruned, dense out of tolerance" in reason
    assert choose(c, 0.01, forced="dense") == ("dense", "forced by --select dense")


@pytest.fixture(scope="module")
def selected(dyn_checkpoint, fake_cifar_root, tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setattr(trt_build, "detect_host", lambda: HostInfo("x86_64", None, None))
    out = tmp_path_factory.mktemp("select")
    args = ["--target", "jetson-orin", "--checkpoint", str(dyn_checkpoint), "--precision", "fp32", "--data", "cifar10",
            "--data-root", str(fake_cifar_root), "--select-images", "40", "--out", str(out)]
    assert build_engine.main(args) == 0
    yield out, args
    mp.undo()


def test_selection_on_onnxrt_is_recorded(selected, capsys):
    out, _ = selected
    bundle = next(out.glob("*-bundle"))
    manifest = verify_bundle(bundle)
    sel = manifest["selection"]
    assert set(sel["candidates"]) == {"conditional", "pruned", "dense"} and sel["backend"] == "onnxrt"
    assert {n: c["num_if"] for n, c in sel["candidates"].items()} == {"conditional": 7, "pruned": 0, "dense": 0}
    for name, rels in manifest["candidates"].items():
        assert all(rel in manifest["files"] for rel in rels.values()), name
        assert 0.0 <= sel["candidates"][name]["accuracy"] <= 1.0 and sel["candidates"][name]["latency_ms"]["count"] > 0
    assert sel["chosen"] == choose(sel["candidates"], sel["max_accuracy_drop"])[0]
    assert sel["max_accuracy_drop"] == 0.0  # fp32 profile: no accuracy may be lost


def test_pruned_or_dense_wins_on_onnxrt(selected):
    """ONNX Runtime loses its NCHWc kernels inside If branches, so the seven-If conditional graph is the slowest
    candidate here; with a tolerance that admits the others' accuracy, a plain candidate is chosen."""
    out, _ = selected
    sel = verify_bundle(next(out.glob("*-bundle")))["selection"]
    c = sel["candidates"]
    assert c["conditional"]["latency_ms"]["p50"] > min(c["pruned"]["latency_ms"]["p50"], c["dense"]["latency_ms"]["p50"])
    wide = 1.0 + c["conditional"]["accuracy"]
    assert choose(c, wide)[0] in ("pruned", "dense")


def test_forced_candidate_is_the_build_graph(dyn_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setattr(trt_build, "detect_host", lambda: HostInfo("x86_64", None, None))
    assert build_engine.main(["--target", "jetson-orin", "--checkpoint", str(dyn_checkpoint), "--select", "dense",
                              "--out", str(tmp_path)]) == 0
    manifest = verify_bundle(next(tmp_path.glob("*-bundle")))
    assert manifest["build_onnx"] == "model.dense.onnx" and manifest["selection"]["chosen"] == "dense"
    assert "model.dense.onnx" in (next(tmp_path.glob("*-bundle")) / "build_on_device.sh").read_text()


def test_select_needs_a_checkpoint_and_fp(tmp_path, dyn_checkpoint):
    with pytest.raises(CosineGateError, match="INT8 candidates"):
        build_engine.main(["--target", "jetson-orin", "--checkpoint", str(dyn_checkpoint), "--precision", "int8",
                           "--select", "fastest", "--out", str(tmp_path)])
    assert not list(tmp_path.glob("*bundle*"))


def test_gpu_clock_decides_when_asked():
    """The TensorRT path times by CUDA events: a candidate slow on the host clock but fast on the GPU clock wins."""
    import time

    import numpy as np

    from cosinegate.bench.candidates import compare_candidates

    class Fake:
        def __init__(self, gpu_ms, host_s):
            self.gpu_ms, self.host_s = gpu_ms, host_s

        def run(self, x):
            time.sleep(self.host_s)
            return {"logits": np.array([[1.0, 0.0]])}, self.gpu_ms

    backends = {"conditional": Fake(5.0, 0.0), "dense": Fake(1.0, 0.004)}
    batches, labels = [np.zeros((1, 1))], np.zeros(1, np.int64)
    assert compare_candidates(backends, batches, labels, 0.0, 1, 4, 2, clock="gpu")["chosen"] == "dense"
    assert compare_candidates(backends, batches, labels, 0.0, 1, 4, 2, clock="wall")["chosen"] == "conditional"
