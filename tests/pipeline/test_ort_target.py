"""build_engine.py --target cpu-onnxruntime: the ORT-native graphs built here, parity against PyTorch (gates exact),
the manifest's ONNX Runtime version and CPU, the selection by the shared rule, refusals in one line."""

import json
import shutil

import pytest

import cosinegate.cli.build_engine as build_engine

from cosinegate.bench.candidates import selection_record
from cosinegate.errors import CosineGateError
from cosinegate.manifests import ORT_ENGINE_FORMAT
from cosinegate.pipeline.ort_target import nchwc_here
from cosinegate.runtime.ort_engine import check_if_ort_engine, check_ort_engine, cpu_identity, onnxruntime_version

TARGET = "cpu-onnxruntime"


@pytest.fixture(scope="module")
def built(dyn_checkpoint, fake_cifar_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("ort") / "engines"
    args = ["--target", TARGET, "--checkpoint", str(dyn_checkpoint), "--data", "cifar10", "--data-root",
            str(fake_cifar_root), "--select-images", "20", "--out", str(out), "--json", str(out.parent / "built.json")]
    assert build_engine.main(args) == 0
    return out


def manifests(out):
    return {p.name: json.loads(p.read_text()) for p in out.glob("*.onnx.json")}


def test_builds_every_candidate_with_parity_and_manifest(built):
    found = manifests(built)
    assert sorted(m["candidate"] for m in found.values()) == ["conditional", "dense", "pruned"]
    for name, m in found.items():
        assert m["format"] == ORT_ENGINE_FORMAT and m["target"] == TARGET
        assert m["onnxruntime_version"] == onnxruntime_version() and m["cpu"] == cpu_identity()
        assert m["layout"] in ("nchwc", "nchw") and len(m["inputs"]["checkpoint_sha256"]) == 64
        assert m["parity"]["passed"], m["parity"]
        parity = json.loads((built / name.replace(".onnx.json", ".onnx.parity.json")).read_text())
        assert parity["passed"] and parity["precision"] == "fp32" and parity["gate_agreement"] == 1.0
    conditional = next(m for m in found.values() if m["candidate"] == "conditional")
    assert conditional["onnx_metadata"]["runtime"] == "onnxruntime-native"


def test_selection_uses_the_shared_rule(built):
    record = json.loads(next(built.glob("*-selection.json")).read_text())
    assert record["backend"] == "onnxrt" and set(record["candidates"]) == {"conditional", "pruned", "dense"}
    shared = selection_record(record["candidates"], record["max_accuracy_drop"])  # the rule the TensorRT path applies
    assert record["chosen"] == shared["chosen"] and record["rule"] == shared["rule"] and record["statistic"] == "p50"
    chosen = next(m for m in manifests(built).values() if m["candidate"] == record["chosen"])
    assert chosen["selection"]["chosen"] == record["chosen"]
    assert json.loads((built.parent / "built.json").read_text())["candidate"] == record["chosen"]  # --json: its manifest
    assert record["candidates"]["conditional"]["num_if"] >= 1 and record["candidates"]["dense"]["num_if"] == 0


def test_built_graph_loads_here_and_is_refused_elsewhere(built, tmp_path):
    import platform

    import onnxruntime

    graph = next(built.glob("*-conditional-fp32-*.onnx"))
    assert graph.name.endswith(f"-conditional-fp32-ort{onnxruntime.__version__}-{platform.machine()}.onnx")  # as documented
    assert check_ort_engine(graph).candidate == "conditional"
    assert check_if_ort_engine(graph).layout == ("nchwc" if nchwc_here() else "nchw")
    plain = tmp_path / "model.plain.onnx"
    shutil.copy(graph, plain)
    assert check_if_ort_engine(plain) is None  # the same graph without its manifest: a plain graph, run anywhere
    with pytest.raises(CosineGateError, match=r"ONNX Runtime 0\.0\.1.*rebuild it on this machine") as exc:
        check_ort_engine(graph, version="0.0.1")
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("argv, words", [
    (["--precision", "fp16"], "precision fp16 is not offered by cpu-onnxruntime"),
    (["--form", "masked"], "ORT-native conditional graph at batch 1"),
    (["--int8", "qdq"], "drop --int8"),
    (["--dla-core", "0"], "drop --dla-core"),  # core 0 is a value too (docs review: it was let through)
])
def test_bad_inputs_in_one_line(argv, words, tiny_checkpoint, tmp_path):
    with pytest.raises(CosineGateError, match=words) as exc:
        build_engine.main(["--target", TARGET, "--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "o")] + argv)
    assert "\n" not in str(exc.value) and not (tmp_path / "o").exists()


def test_bench_refuses_a_graph_from_another_onnxruntime(built, tmp_path):
    import shutil

    from cosinegate.bench.backends import OnnxrtBackend

    graph = tmp_path / "moved.onnx"
    shutil.copy(next(built.glob("*-conditional-fp32-*.onnx")), graph)
    manifest = json.loads(next(built.glob("*-conditional-fp32-*.onnx.json")).read_text())
    (tmp_path / "moved.onnx.json").write_text(json.dumps(dict(manifest, onnxruntime_version="0.0.1")))
    with pytest.raises(CosineGateError, match=r"cannot run here: built by ONNX Runtime 0\.0\.1") as exc:
        OnnxrtBackend(graph)
    assert "\n" not in str(exc.value) and "--target cpu-onnxruntime" in str(exc.value)
    (tmp_path / "moved.onnx.json").write_text(json.dumps(dict(manifest, cpu=dict(manifest["cpu"], machine="riscv64"))))
    with pytest.raises(CosineGateError, match="this CPU is"):
        OnnxrtBackend(graph)


def test_nchwc_only_on_x86():
    assert nchwc_here("x86_64") and nchwc_here("AMD64")
    assert not nchwc_here("aarch64") and not nchwc_here("arm64")
