"""A cpu-onnxruntime graph runs only under the ONNX Runtime and on the CPU that built it; refusals are one line."""

import json

import pytest

from cosinegate.artifacts import sha256_file
from cosinegate.errors import CosineGateError
from cosinegate.manifests import OrtEngineManifest
from cosinegate.runtime.ort_engine import check_ort_engine, cpu_identity, host_mismatch, is_ort_engine

CPU = {"machine": "x86_64", "model": "Some CPU", "isa": ["avx2", "avx512"]}


def graph_with_manifest(tmp_path, **changes):
    graph = tmp_path / "m.onnx"
    graph.write_bytes(b"not really a graph; only its hash is checked here")
    fields = dict(engine_sha256=sha256_file(graph), target="cpu-onnxruntime", onnxruntime_version="1.2.3", cpu=CPU)
    fields.update(changes)
    (tmp_path / "m.onnx.json").write_text(json.dumps(OrtEngineManifest(**fields).to_json()))
    return graph


def test_same_version_and_cpu_pass(tmp_path):
    graph = graph_with_manifest(tmp_path)
    assert is_ort_engine(graph)
    assert check_ort_engine(graph, version="1.2.3", cpu=dict(CPU)).onnxruntime_version == "1.2.3"


@pytest.mark.parametrize("version, cpu, words", [
    ("1.2.4", CPU, "built by ONNX Runtime 1.2.3, this is ONNX Runtime 1.2.4"),
    ("1.2.3", dict(CPU, machine="aarch64"), "this CPU is aarch64"),
    ("1.2.3", dict(CPU, isa=["avx2"]), r"\(isa\)"),
    ("1.2.3", dict(CPU, model="Other CPU"), "this CPU is Other CPU"),
])
def test_other_version_or_cpu_refused_in_one_line(version, cpu, words, tmp_path):
    graph = graph_with_manifest(tmp_path)
    with pytest.raises(CosineGateError, match=words) as exc:
        check_ort_engine(graph, version=version, cpu=cpu)
    message = str(exc.value)
    assert "\n" not in message and "cosinegate build-engine --target cpu-onnxruntime" in message


def test_changed_graph_and_missing_manifest_refused(tmp_path):
    graph = graph_with_manifest(tmp_path)
    graph.write_bytes(b"changed")
    with pytest.raises(CosineGateError, match="does not match the hash"):
        check_ort_engine(graph, version="1.2.3", cpu=CPU)
    (tmp_path / "m.onnx.json").unlink()
    assert not is_ort_engine(graph)
    with pytest.raises(CosineGateError, match="has no manifest"):
        check_ort_engine(graph)


def test_cpu_identity_reads_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Intel(R) Xeon(R)  Gold\nflags\t\t: fpu sse avx2 avx512f\n")
    cpu = cpu_identity(info)
    assert cpu["model"] == "Intel(R) Xeon(R) Gold" and cpu["isa"] == ["avx2", "avx512"]
    info.write_text("processor\t: 0\nFeatures\t: fp asimd\nCPU implementer\t: 0x41\nCPU part\t: 0xd42\n")
    assert cpu_identity(info)["isa"] == ["neon"] and "0xd42" in cpu_identity(info)["model"]
    assert host_mismatch(OrtEngineManifest(onnxruntime_version="9", cpu=CPU), "9", CPU) is None
