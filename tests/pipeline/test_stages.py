"""The stage pipeline lives outside cosinegate/trt/, which imports nothing of onnx, quant, training or data."""

import ast

from conftest import ROOT

ALLOWED = ("cosinegate.trt", "cosinegate.errors", "cosinegate.graphmeta", "cosinegate.artifacts", "cosinegate.parity", "cosinegate.minitoml",
           "cosinegate.runtime.base", "cosinegate.runtime.tensorrt_backend", "cosinegate.lazy",  # the torch-free TensorRT runner
           "cosinegate.manifests", "cosinegate.trtversion", "cosinegate.layernames")


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
    from cosinegate.pipeline.stages import record_stage, reusable

    artifact = tmp_path / "a.onnx"
    artifact.write_bytes(b"graph")
    inputs = {"stage": "export", "opset": 17}
    assert not reusable(artifact, inputs)
    record_stage(artifact, inputs)
    assert reusable(artifact, inputs)
    assert not reusable(artifact, {**inputs, "opset": 18})
    artifact.write_bytes(b"changed")
    assert not reusable(artifact, inputs)


def test_a_stage_record_nested_past_the_parser_is_made_again(tmp_path):
    """A handed work folder's .stage.json of 100,000 brackets was a RecursionError traceback."""
    from cosinegate.pipeline.stages import record_stage, reusable, stage_record_path

    artifact = tmp_path / "a.onnx"
    artifact.write_bytes(b"graph")
    record_stage(artifact, {"stage": "export"})
    stage_record_path(artifact).write_text("[" * 100000)
    assert not reusable(artifact, {"stage": "export"})


def test_calibration_folder_files_are_checked_against_its_manifest(tmp_path):
    """--calibration DIR: a Q/DQ graph or cache that is not the one its manifest names (a mixed folder) is refused."""
    import hashlib
    import json as json_mod

    import pytest as pytest_mod

    from cosinegate.errors import CosineGateError
    from cosinegate.pipeline.stages import calibration_files

    def sha(data):
        return hashlib.sha256(data).hexdigest()

    checkpoint, other = tmp_path / "a.pt", tmp_path / "b.pt"
    checkpoint.write_bytes(b"checkpoint a")
    other.write_bytes(b"checkpoint b")
    cal = tmp_path / "cal"
    cal.mkdir()
    (cal / "model.qdq.masked.onnx").write_bytes(b"masked graph")
    (cal / "calibration.cache").write_bytes(b"cache")
    (cal / "manifest.json").write_text(json_mod.dumps({
        "checkpoint_sha256": sha(b"checkpoint a"), "onnx_sha256": {"model.qdq.masked.onnx": sha(b"masked graph")},
        "cache": {"sha256": sha(b"cache")}}))
    assert calibration_files(cal, "masked", checkpoint) == (cal / "model.qdq.masked.onnx", cal / "calibration.cache")
    assert calibration_files(cal, "conditional", checkpoint) == (None, cal / "calibration.cache")
    with pytest_mod.raises(CosineGateError, match="made from another checkpoint"):
        calibration_files(cal, "masked", other)
    (cal / "model.qdq.masked.onnx").write_bytes(b"another model's masked graph")
    with pytest_mod.raises(CosineGateError, match="model.qdq.masked.onnx is not the file its manifest.json names"):
        calibration_files(cal, "masked", checkpoint)
    (cal / "model.qdq.masked.onnx").write_bytes(b"masked graph")
    (cal / "calibration.cache").write_bytes(b"another cache")
    with pytest_mod.raises(CosineGateError, match="calibration.cache is not the file"):
        calibration_files(cal, "masked", checkpoint)
    # a link in the folder (it would be read, and copied into a bundle) and a manifest of the wrong shape
    (cal / "calibration.cache").unlink()
    (cal / "calibration.cache").symlink_to(tmp_path / "a.pt")
    with pytest_mod.raises(CosineGateError, match="calibration.cache is a symbolic link; a calibration folder holds"):
        calibration_files(cal, "masked", checkpoint)
    (cal / "calibration.cache").unlink()
    (cal / "calibration.cache").write_bytes(b"cache")
    (cal / "manifest.json").write_text(json_mod.dumps({"checkpoint_sha256": sha(b"checkpoint a"), "cache": "x"}))
    with pytest_mod.raises(CosineGateError, match="onnx_sha256 and cache are not mappings"):
        calibration_files(cal, "masked", checkpoint)
    (cal / "manifest.json").unlink()
    with pytest_mod.raises(CosineGateError, match="has no manifest.json"):
        calibration_files(cal, "masked", checkpoint)


def test_reference_images_are_class_balanced():
    """An image folder lists its classes in order: the first N test images could all be one class (300 airplanes
    chose among candidates on CIFAR-10). The selection and timing images are a class-balanced sample."""
    from types import SimpleNamespace

    import numpy as np

    from cosinegate.data.imageset import ImageSet
    from cosinegate.pipeline.stages import reference_images

    labels = np.repeat(np.arange(5), 20)  # sorted by class, as a folder is read
    test = ImageSet(np.zeros((100, 8, 8, 3), np.uint8), labels, [str(i) for i in range(100)], [f"c{i}" for i in range(5)])
    batches, got = reference_images(SimpleNamespace(test=test), samples=10)
    assert len(batches) == 10 and sorted(np.bincount(got, minlength=5)) == [2] * 5
    assert len(reference_images(SimpleNamespace(test=test), samples=500)[0]) == 100  # all of them when fewer
