"""The stage pipeline lives outside cosinegate/trt/, which imports nothing of onnx, quant, training or data."""

import ast

from conftest import ROOT

ALLOWED = ("cosinegate.trt", "cosinegate.errors", "cosinegate.artifacts", "cosinegate.parity", "cosinegate.minitoml")


def cosinegate_imports(path):
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
    return [n for n in names if n == "cosinegate" or n.startswith("cosinegate.")]


def test_trt_knows_tensorrt_only():
    offending = {path.name: [n for n in cosinegate_imports(path) if not n.startswith(ALLOWED)]
                 for path in sorted((ROOT / "cosinegate" / "trt").glob("*.py"))}
    assert {k: v for k, v in offending.items() if v} == {}


def test_stages_reuse_by_input_hash(tmp_path):
    from cosinegate.pipeline import record_stage, reusable

    artifact = tmp_path / "a.onnx"
    artifact.write_bytes(b"graph")
    inputs = {"stage": "export", "opset": 17}
    assert not reusable(artifact, inputs)
    record_stage(artifact, inputs)
    assert reusable(artifact, inputs)
    assert not reusable(artifact, {**inputs, "opset": 18})
    artifact.write_bytes(b"changed")
    assert not reusable(artifact, inputs)
