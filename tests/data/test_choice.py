"""Issue 13: stages take their data from the checkpoint, say so, record it; graphs carry their provenance and metadata."""

import json

import onnx
import pytest
from conftest import run_script, write_image_tree

from cosinegate.errors import CosineGateError


def _moved_checkpoint(src, dst, root):
    """A copy of `src` whose training data is recorded at `root`."""
    from cosinegate.training.checkpoint import load_checkpoint, save_checkpoint

    state = load_checkpoint(src)
    state["config"]["data"]["root"] = str(root)
    save_checkpoint(dst, **{k: v for k, v in state.items() if k != "format"})
    return dst


def test_choose_data_defaults_to_the_checkpoint_and_refuses_what_is_not_there(tiny_checkpoint, fake_cifar_root, tmp_path):
    from cosinegate.data.choice import DataOrigin, choose_data
    from cosinegate.training.checkpoint import load_checkpoint

    origin = DataOrigin.of_checkpoint(load_checkpoint(tiny_checkpoint))
    lines = []
    choice = choose_data(origin, log=lines.append)
    assert (choice.source, str(choice.root), choice.from_model) == ("cifar10", str(fake_cifar_root), True)
    assert len(choice.test) == 100 and "cifar10" in lines[0] and "checkpoint's training data" in lines[0]
    assert choice.record()["source"] == "cifar10" and choice.record()["root"] == str(fake_cifar_root)

    gone = DataOrigin("imagefolder", str(tmp_path / "gone"), origin.classes)
    with pytest.raises(CosineGateError, match="--data-root DIR"):
        choose_data(gone, log=None)
    tree = tmp_path / "tree"
    write_image_tree(tree)  # three classes against the checkpoint's ten
    with pytest.raises(CosineGateError, match="has 3 classes but the model was trained on 10"):
        choose_data(origin, "imagefolder", tree, log=None)
    explicit = choose_data(origin, "synthetic", log=None)  # other data of the same class count, when asked for
    assert explicit.source == "synthetic" and not explicit.from_model


def test_parity_uses_and_records_the_checkpoint_data(dyn_checkpoint, fake_cifar_root, tmp_path):
    onnx_path, report = tmp_path / "m.onnx", tmp_path / "parity.json"
    assert run_script("deploy/export_onnx.py", "--checkpoint", dyn_checkpoint, "--out", onnx_path).returncode == 0
    done = run_script("deploy/parity.py", "--checkpoint", dyn_checkpoint, "--onnx", onnx_path, "--test-images", 20,
                      "--json", report)
    assert done.returncode == 0, done.stdout + done.stderr
    rep = json.loads(report.read_text())
    assert rep["data"]["source"] == "cifar10" and rep["data"]["root"] == str(fake_cifar_root)
    assert f"data: cifar10 at {fake_cifar_root}" in done.stdout
    assert rep["provenance"]["verified"] and rep["num_samples"] == 20


def test_commands_refuse_a_checkpoint_whose_data_is_missing(tiny_checkpoint, tmp_path):
    ckpt = _moved_checkpoint(tiny_checkpoint, tmp_path / "moved.pt", tmp_path / "not-here")
    out = tmp_path / "calib"
    done = run_script("calibration/calibrate.py", "--checkpoint", ckpt, "--calib-images", 20, "--out", out)
    assert done.returncode == 2 and "--data-root DIR" in done.stderr and str(tmp_path / "not-here") in done.stderr
    assert not out.exists()


def test_calibration_defaults_to_the_checkpoint_data(tiny_checkpoint, fake_cifar_root, tmp_path):
    out = tmp_path / "calib"
    done = run_script("calibration/calibrate.py", "--checkpoint", tiny_checkpoint, "--calib-images", 20, "--method", "minmax",
                      "--out", out, "--json", tmp_path / "calib.json")
    assert done.returncode == 0, done.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["calibration"]["data"] == "cifar10" and manifest["calibration"]["data_root"] == str(fake_cifar_root)
    assert json.loads((tmp_path / "calib.json").read_text()) == manifest
    assert "data: cifar10" in done.stdout


def test_parity_refuses_a_graph_of_another_checkpoint(tiny_checkpoint, dyn_checkpoint, tmp_path):
    onnx_path = tmp_path / "dyn.onnx"
    assert run_script("deploy/export_onnx.py", "--checkpoint", dyn_checkpoint, "--out", onnx_path).returncode == 0
    from cosinegate.artifacts import sha256_file

    done = run_script("deploy/parity.py", "--checkpoint", tiny_checkpoint, "--onnx", onnx_path, "--test-images", 4)
    assert done.returncode == 2 and "exported from another checkpoint" in done.stderr
    assert sha256_file(dyn_checkpoint)[:16] in done.stderr and "top-1" not in done.stderr + done.stdout
    # a graph without the metadata (an older export) is checked against its manifest instead
    model = onnx.load(str(onnx_path))
    kept = [p for p in model.metadata_props if p.key != "cosinegate.checkpoint_sha256"]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    onnx.save(model, str(onnx_path))
    manifest = json.loads((tmp_path / "dyn.onnx.json").read_text())
    manifest["onnx_sha256"] = sha256_file(onnx_path)
    (tmp_path / "dyn.onnx.json").write_text(json.dumps(manifest))
    done = run_script("deploy/parity.py", "--checkpoint", tiny_checkpoint, "--onnx", onnx_path, "--test-images", 4)
    assert done.returncode == 2 and "per its" in done.stderr and "dyn.onnx.json" in done.stderr


def test_exported_graph_carries_what_a_user_needs(dyn_checkpoint, tmp_path):
    from cosinegate.onnx.export import get_metadata
    from cosinegate.training.checkpoint import load_checkpoint

    onnx_path = tmp_path / "m.onnx"
    assert run_script("deploy/export_onnx.py", "--checkpoint", dyn_checkpoint, "--out", onnx_path).returncode == 0
    meta = get_metadata(onnx.load(str(onnx_path)))
    assert meta["classes"] == load_checkpoint(dyn_checkpoint)["classes"]
    assert meta["input_layout"] == "NCHW" and meta["input_size"] == [3, 32, 32]
    norm, trained = meta["normalization"], load_checkpoint(dyn_checkpoint)["normalization"]
    assert norm["mean"] == pytest.approx(trained["mean"]) and norm["std"] == pytest.approx(trained["std"])
    assert norm["pixel_range"] == [0, 255] and norm["scale"] == pytest.approx(1 / 255)
    assert meta["gate_threshold"]["threshold"] == 0.0 and meta["gate_threshold"]["on"] == "logit"
    assert meta["policy"] == "auto" and [b["kind"] for b in meta["blocks"]][:2] == ["always_run", "always_skipped"]
    manifest = json.loads((tmp_path / "m.onnx.json").read_text())
    assert manifest["card"]["classes"] == meta["classes"] and manifest["input"]["normalization"]["std"] == norm["std"]


def test_other_class_names_are_said_and_recorded(tmp_path):
    """Reviewer finding: a 3-class model on a folder of 3 other classes ran silently (parity 'PASSED', 33% top-1)."""
    from cosinegate.data.choice import DataOrigin, choose_data

    tree = tmp_path / "tree"
    write_image_tree(tree, classes=("airplane", "bird", "cat"), train_per_class=1, test_per_class=1)
    lines = []
    same = choose_data(DataOrigin("imagefolder", str(tree), ("airplane", "bird", "cat")), log=lines.append)
    assert same.record()["classes_differ_from_model"] == [] and len(lines) == 1
    other = choose_data(DataOrigin("imagefolder", str(tmp_path / "x"), ("dog", "bird", "horse")), "imagefolder", tree,
                        log=lines.append)
    assert other.record()["classes_differ_from_model"] == ["dog->airplane", "horse->cat"]
    assert lines[-1].startswith("note: the data's class names differ from the model's (dog->airplane, horse->cat)")
