"""`build_engine.py --bundle DIR` from a stranger: only plain files inside DIR are read, output names are plain."""

import json
import os
import re
import shutil

import onnx
from onnx import TensorProto, helper
from scripts_in_process import run

from cosinegate.artifacts import sha256_file
from cosinegate.manifests import BUNDLE_FORMAT
from cosinegate.pipeline.stages import model_name
from cosinegate.trt.manifest import BUNDLE_MANIFEST

BUILD = "deploy/build_engine.py"


def tiny_onnx(path):
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 32, 32])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3, 32, 32])
    graph = helper.make_graph([helper.make_node("Relu", ["input"], ["logits"])], "g", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def with_external_function(model, location):
    """``model`` with a model-local function whose Constant reads its value from the external file ``location``
    (onnx and TensorRT's parser read functions' tensors too)."""
    value = helper.make_tensor("value", TensorProto.FLOAT, [1], [0.0])
    value.ClearField("float_data")
    value.data_location = TensorProto.EXTERNAL
    value.external_data.add(key="location", value=location)
    constant = helper.make_node("Constant", [], ["y"], value=value)
    model.functions.append(helper.make_function("local", "F", [], ["y"], [constant], [helper.make_opsetid("", 17)]))
    return model


def write_bundle(folder, files=None, **fields):
    """A bundle folder whose manifest hashes `files` {name: path on disk} (default: its own model.conditional.onnx)."""
    folder.mkdir(parents=True, exist_ok=True)
    if files is None:
        tiny_onnx(folder / "model.conditional.onnx")
        files = {"model.conditional.onnx": folder / "model.conditional.onnx"}
    manifest = {"format": BUNDLE_FORMAT, "model": "tiny", "target": "jetson-orin", "form": "conditional",
                "precision": "fp16", "batch": 1, "int8_path": None, "build_onnx": "model.conditional.onnx",
                "calibration_cache": None, **fields, "files": {rel: sha256_file(path) for rel, path in files.items()}}
    (folder / BUNDLE_MANIFEST).write_text(json.dumps(manifest))
    return folder


def test_crafted_bundles_are_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    tiny_onnx(outside / "secret.onnx")
    (outside / "x.cache").write_text("TRT-8502-EntropyCalibration2\n")
    out = tmp_path / "out"
    good = write_bundle(tmp_path / "good")
    code, stdout, err = run(BUILD, "--target", "jetson-orin", "--bundle", good, "--out", out)
    assert code == 0 and "verified" in stdout, err  # the baseline passes, so each refusal below is the crafted part

    def variant(name, **kw):
        folder = tmp_path / name
        shutil.copytree(good, folder)
        return folder, kw

    cases = {}
    folder, _ = variant("dotdot")
    cases["files ../"] = (write_bundle(folder, {"model.conditional.onnx": folder / "model.conditional.onnx",
                                                "../outside/secret.onnx": outside / "secret.onnx"}), "not a relative path inside")
    folder, _ = variant("absolute")
    cases["files absolute"] = (write_bundle(folder, {"model.conditional.onnx": folder / "model.conditional.onnx",
                                                     str(outside / "secret.onnx"): outside / "secret.onnx"}), "not a relative path inside")
    folder, _ = variant("link")
    os.remove(folder / "model.conditional.onnx")
    os.symlink(outside / "secret.onnx", folder / "model.conditional.onnx")
    cases["files symlink"] = (write_bundle(folder, {"model.conditional.onnx": outside / "secret.onnx"}), "symlink")
    folder, _ = variant("linkdir")
    os.symlink(outside, folder / "calibration")
    cases["folder symlink"] = (write_bundle(folder, {"model.conditional.onnx": folder / "model.conditional.onnx",
                                                     "calibration/x.cache": outside / "x.cache"}), "symlink")
    folder, _ = variant("manifestlink")
    os.replace(folder / BUNDLE_MANIFEST, outside / BUNDLE_MANIFEST)
    os.symlink(outside / BUNDLE_MANIFEST, folder / BUNDLE_MANIFEST)
    cases["manifest symlink"] = (folder, "symlink")
    for field, value in (("build_onnx", "../outside/secret.onnx"), ("build_onnx", str(outside / "secret.onnx")),
                         ("calibration_cache", "../outside/x.cache"), ("calibration_cache", str(outside / "x.cache"))):
        folder, _ = variant(f"{field}-{len(cases)}")
        cases[f"{field} {value[:12]}"] = (write_bundle(folder, **{field: value}), f"{field} .* is not one of its hashed files")
    folder, _ = variant("notonnx")
    shutil.copy(folder / "model.conditional.onnx", folder / "model.conditional.bin")
    cases["build_onnx not .onnx"] = (write_bundle(folder, {"model.conditional.bin": folder / "model.conditional.bin"},
                                                  build_onnx="model.conditional.bin"), "build_onnx 'model.conditional.bin' is not an .onnx")
    folder, _ = variant("function")
    onnx.save(with_external_function(onnx.load(str(folder / "model.conditional.onnx")), "../outside/secret.onnx"),
              str(folder / "model.conditional.onnx"))
    cases["external data in a function"] = (write_bundle(folder, {"model.conditional.onnx": folder / "model.conditional.onnx"}),
                                            "reads external data '../outside/secret.onnx'")
    for field, value in (("model", "../../escaped"), ("model", "/tmp/escaped"), ("model", "tiny\nrm -rf ~"),
                         ("model", "$(touch pwned)"), ("form", "../x"), ("precision", "fp16;id"), ("batch", "1"),
                         ("batch", True), ("batch", 10**9)):
        folder, _ = variant(f"{field}-{len(cases)}")
        cases[f"{field} {value!r}"] = (write_bundle(folder, **{field: value}), "re-create the bundle")
    for name, (folder, message) in cases.items():
        code, stdout, err = run(BUILD, "--target", "jetson-orin", "--bundle", folder, "--out", out)
        assert code == 2 and "Traceback" not in err, (name, code, err[-600:])
        assert re.search(message, err), (name, err)
        assert len(err.strip().splitlines()) == 1, (name, err)
    assert not out.exists() and sorted(p.name for p in outside.iterdir()) == [BUNDLE_MANIFEST, "secret.onnx", "x.cache"]


def test_output_names_are_plain(tmp_path):
    assert model_name(tmp_path / "run\nrm -rf ~" / "best.pt") == "run_rm_-rf__"
    assert model_name(tmp_path / "$(id)`x`" / "last.pt") == "__id__x_"
    assert model_name(tmp_path / "..hidden.onnx") == "hidden"  # never a hidden file
    assert model_name(tmp_path / ".conditional.onnx") == "model"
    assert model_name(tmp_path / "model.masked.int8.onnx") == "model"
    assert model_name(tmp_path / "rates-r0.55-s0.pt") == "rates-r0.55-s0"  # a dot in the name is kept
    assert model_name(tmp_path / "balanced-resnet20" / "best.pt") == "balanced-resnet20"
