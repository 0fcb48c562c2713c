"""Caches, manifests, bundles and Polygraphy inputs from outside: a bad one refused in one line, never dropped or guessed."""

import base64
import io
import json
import re

import numpy as np
import pytest
from scripts_in_process import run

from cosinegate.errors import CosineGateError
from cosinegate.quant.cache import parse_cache
from cosinegate.trt.manifest import BUNDLE_MANIFEST
from test_trust_bundle import BUILD, write_bundle

HEADER = "TRT-8502-EntropyCalibration2"


def _hex(value):
    return np.float32(value).view(np.uint32).item().to_bytes(4, "big").hex()


@pytest.mark.parametrize("label, scale", [("FLT_MAX", float(np.finfo(np.float32).max)), ("denormal", 1e-40),
                                          ("just above FLT_MAX / 127", float(np.finfo(np.float32).max) / 100)])
def test_a_cache_scale_amax_cannot_carry_is_refused_never_dropped(tmp_path, label, scale):
    path = tmp_path / "c.cache"
    path.write_text(f"{HEADER}\nt0: {_hex(1.0)}\nt1: {_hex(scale)}\n")
    with pytest.raises(CosineGateError, match=r"line 3 .* normal float32"):
        parse_cache(path)


def test_a_normal_cache_scale_is_kept_exactly(tmp_path):
    path = tmp_path / "c.cache"
    path.write_text(f"{HEADER}\nt0: {_hex(0.0125)}\n")
    assert parse_cache(path)[1] == {"t0": float(np.float32(0.0125))}


# ---- manifests ----

@pytest.mark.parametrize("label, text, message", [
    ("a JSON list", "[1, 2]", "holds a JSON list, not an object"),
    ("nested 100000 deep", "[" * 100000 + "]" * 100000, "nested over 64 deep"),
    ("nested 100 deep objects", '{"a": ' * 100 + "1" + "}" * 100, "nested over 64 deep"),
    ("not UTF-8", b"\xff\xfe{}", "is not valid JSON"),
])
def test_a_bundle_manifest_of_the_wrong_shape_is_refused(tmp_path, label, text, message):
    folder = write_bundle(tmp_path / "b")
    manifest = folder / BUNDLE_MANIFEST
    manifest.write_bytes(text if isinstance(text, bytes) else text.encode())
    code, _, err = run(BUILD, "--target", "jetson-orin", "--bundle", folder, "--out", tmp_path / "out")
    assert code == 2 and "Traceback" not in err and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


def test_an_engine_manifest_without_its_versions_is_refused(tmp_path):
    from cosinegate.manifests import ENGINE_FORMAT
    from cosinegate.trt.manifest import check_engine_manifest

    engine = tmp_path / "m.engine"
    engine.write_bytes(b"engine")
    (tmp_path / "m.engine.json").write_text(json.dumps({"format": ENGINE_FORMAT, "trt_version": ["10"]}))
    with pytest.raises(CosineGateError, match="trt_version = .* is not a version"):
        check_engine_manifest(engine, "10.3.0", "8.7")


@pytest.mark.parametrize("rails", [{"total": ["VDD_IN", "$(touch PWNED)"], "detail": []}, {"total": ["V" * 33], "detail": []},
                                   {"total": ["VDD_IN"]}, ["VDD_IN"], "VDD_IN", {"total": "VDD_IN", "detail": []},
                                   {"total": [["VDD_IN"]], "detail": []}])
def test_an_engine_manifests_bad_power_rails_are_one_line(rails):
    from cosinegate.manifests import EngineManifest
    from cosinegate.trt.manifest import engine_power_rails

    with pytest.raises(CosineGateError, match="is not lists of tegrastats rail names") as refused:
        engine_power_rails(EngineManifest(target="jetson-orin", power_rails=rails), "x.engine.json")
    assert "\n" not in str(refused.value)


def test_power_rails_of_an_engine_built_before_they_were_recorded_or_of_a_profile_without_them():
    """The shipped profile of its target; a target that is not shipped (a local profile) is one line: rebuild. A
    profile without rails to sum (desktop.toml) is one line before anything is measured."""
    from cosinegate.manifests import EngineManifest
    from cosinegate.trt.manifest import engine_power_rails
    from cosinegate.trt.targets import load_target

    orin = load_target("jetson-orin")
    assert engine_power_rails(EngineManifest(target="jetson-orin"), "x") == (orin.total_power_rails, orin.detail_power_rails)
    with pytest.raises(CosineGateError, match="records no power rails and its target 'my-orin' is not a shipped profile"):
        engine_power_rails(EngineManifest(target="my-orin"), "x.engine.json")
    with pytest.raises(CosineGateError, match="is not a shipped profile"):
        engine_power_rails(EngineManifest(target="../jetson-orin"), "x.engine.json")
    with pytest.raises(CosineGateError, match=r"\('desktop'\) names no power rails to sum"):
        engine_power_rails(EngineManifest(target="desktop"), "x.engine.json")
    with pytest.raises(CosineGateError, match="names no power rails to sum"):
        engine_power_rails(EngineManifest(target="mine", power_rails={"total": [], "detail": ["VDD_IN"]}), "x")


def test_an_engine_manifest_with_bad_onnx_metadata_is_refused(tmp_path):
    from cosinegate.manifests import ENGINE_FORMAT, EngineManifest
    from cosinegate.pipeline.bench import engine_metadata

    for meta, message in (([1], "is not a mapping"), ({"blocks": [1, 2, 3]}, "cosinegate.blocks = [1, 2, 3]"),
                          ({"image_size": 10**6}, "cosinegate.image_size = 1000000")):
        manifest = {"format": ENGINE_FORMAT, "trt_version": "10.3.0", "compute_capability": "8.7", "onnx_metadata": meta}
        with pytest.raises(CosineGateError, match=f"onnx_metadata {re.escape(message)}"):
            engine_metadata(EngineManifest.from_json(manifest, "m.engine.json"), tmp_path / "m.engine")


def test_an_engines_reference_inputs_are_a_file_of_its_bundle_or_the_desktops_own_path(tmp_path, monkeypatch):
    """bench --engine takes its images from the engine manifest's reference_inputs: a board build names a file of its
    bundle (found from any working folder), a desktop build its absolute path; a path out of the bundle or a value
    that is no path is one line (a number was a TypeError, '../' left the bundle)."""
    from cosinegate.manifests import EngineManifest
    from cosinegate.pipeline.bench import reference_inputs

    bundle = tmp_path / "bundle"
    (bundle / "results").mkdir(parents=True)
    (bundle / "inputs.npz").write_bytes(b"x")
    (bundle / "own.npz").write_bytes(b"x")
    (tmp_path / "outside.npz").write_bytes(b"x")
    engine = bundle / "results" / "m.engine"
    monkeypatch.chdir(tmp_path)
    assert reference_inputs(engine, EngineManifest(reference_inputs="own.npz")) == bundle / "own.npz"
    assert reference_inputs(engine, EngineManifest(reference_inputs="gone.npz")) == bundle / "inputs.npz"
    desktop = str(tmp_path / "outside.npz")
    assert reference_inputs(engine, EngineManifest(reference_inputs=desktop)) == tmp_path / "outside.npz"
    for named, message in ((5, "names reference inputs '5', not a file"),
                           ("../outside.npz", "names reference inputs '../outside.npz', not a file of its bundle")):
        with pytest.raises(CosineGateError, match=message):
            reference_inputs(engine, EngineManifest(reference_inputs=named))


def test_a_bundle_graph_reading_external_data_outside_is_refused(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    outside = tmp_path / "secret.bin"
    outside.write_bytes(np.ones(4, np.float32).tobytes())
    folder = tmp_path / "b"
    folder.mkdir()
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 4])
    weight = helper.make_tensor("w", TensorProto.FLOAT, [4], [0.0] * 4)
    weight.ClearField("float_data")
    weight.data_location = TensorProto.EXTERNAL
    weight.external_data.add(key="location", value="../secret.bin")
    graph = helper.make_graph([helper.make_node("Add", ["input", "w"], ["logits"])], "g", [x], [y], [weight])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(folder / "model.conditional.onnx"))
    write_bundle(folder, {"model.conditional.onnx": folder / "model.conditional.onnx"})
    code, _, err = run(BUILD, "--target", "jetson-orin", "--bundle", folder, "--out", tmp_path / "out")
    assert code == 2 and "reads external data '../secret.bin'" in err and "Traceback" not in err, err


# ---- Polygraphy inputs for bench ----

def _feeds(path, arrays):
    from polygraphy.json import save_json

    save_json([{"input": a} for a in arrays], str(path))
    return path


def _text(path, text):
    path.write_text(text)
    return path


def _pickled_tensor_feeds(path):
    import torch

    buffer = io.BytesIO()
    torch.save(torch.zeros(1, 3, 32, 32), buffer)
    path.write_text(json.dumps([{"input": {"tensor": base64.b64encode(buffer.getvalue()).decode(), "polygraphy_class": "Tensor"}}]))
    return path


def _npz(path, **arrays):
    path = path.with_suffix(".npz")
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)
    return path


NORM = {"mean": np.float32([0.5, 0.5, 0.5]), "std": np.float32([0.25, 0.25, 0.25]), "batch": np.int64(1)}


def _npz_payload_feeds(path):
    """Feeds whose array is a base64 .npz (Polygraphy still decodes them: a zip that may inflate past the file)."""
    import base64
    import io

    buf = io.BytesIO()
    np.savez(buf, x=np.zeros((1, 3, 32, 32), np.float32))
    path.write_text(json.dumps([{"input": {"array": base64.b64encode(buf.getvalue()).decode(), "polygraphy_class": "ndarray"}}]))
    return path


@pytest.mark.parametrize("label, make, message", [
    ("an npz with a pickled object", lambda p: _npz(p, images=np.array([{"x": 1}], dtype=object), **NORM),
     "is not a reference inputs .npz"),
    ("an npz of float images", lambda p: _npz(p, images=np.zeros((2, 32, 32, 3), np.float32), **NORM), "not uint8 N x H x W x 3"),
    ("an npz with a zero std", lambda p: _npz(p, images=np.zeros((2, 32, 32, 3), np.uint8), **{**NORM, "std": np.float32([0, 1, 1])}),
     "std is not positive"),
    ("an npz of another size", lambda p: _npz(p, images=np.zeros((2, 16, 16, 3), np.uint8), **NORM),
     "holds 16x16 images but the model takes 32x32"),
    ("another image size", lambda p: _feeds(p, [np.zeros((1, 3, 16, 16), np.float32)]), "holds 16x16 images but the model takes 32x32"),
    ("float16", lambda p: _feeds(p, [np.zeros((1, 3, 32, 32), np.float16)]), "must be a float32 N x 3 x S x S array"),
    ("a pickled tensor", _pickled_tensor_feeds, "a pickled tensor or any other object is refused unread"),
    ("a JSON object", lambda p: _text(p, "{}"), "is not a Polygraphy inputs JSON: a list of feeds"),
    ("nested deep", lambda p: _text(p, "[" * 50000 + "]" * 50000), "nested over 64 deep"),
    ("4 channels", lambda p: _feeds(p, [np.zeros((1, 4, 32, 32), np.float32)]), "not 3 x S x S"),
    ("an .npz payload", _npz_payload_feeds, "an array is not a .npy"),  # diff review: Polygraphy inflates it
])
def test_bench_inputs_must_be_the_graphs_shape_and_plain_arrays(tiny_checkpoint, tmp_path, label, make, message):
    path = make(tmp_path / "inputs.json")
    code, _, err = run("deploy/bench.py", "--checkpoint", tiny_checkpoint, "--backend", "torch", "--inputs", path, "--iterations", "2")
    assert code == 2 and "Traceback" not in err and message in err, err
