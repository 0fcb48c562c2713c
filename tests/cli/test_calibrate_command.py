"""calibration/calibrate.py and calibration/data_loader.py: outputs, and bad input (exit 2, nothing written)."""

import json

import numpy as np

from conftest import run_script
from test_calibrate import paper_checkpoint


def _ckpt(tmp_path, root, mode="predictive"):
    return paper_checkpoint(tmp_path / f"{mode}.pt", root, mode)


def test_cli_writes_everything_and_data_loader_matches(tmp_path, fake_cifar_root, monkeypatch):
    ckpt, out = _ckpt(tmp_path, fake_cifar_root), tmp_path / "out"
    result = run_script("calibration/calibrate.py", "--checkpoint", ckpt, "--data", "cifar10", "--data-root", fake_cifar_root,
                        "--num-images", 20, "--method", "minmax", "--trt-version", "8.5", "--policy", "conditional-all", "--out", out)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["calibration.cache", "manifest.json", "model.qdq.conditional.onnx", "model.qdq.onnx"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["num_images"] == 20 and len(manifest["calibration"]["ids"]) == 20
    assert manifest["trt_version"] == "8.5.2" and manifest["cache"]["header"] == "TRT-8502-MinMaxCalibration"
    assert (out / "calibration.cache").read_text().startswith("TRT-8502-MinMaxCalibration\n")

    import importlib.util

    from cosinegate.quant.calibset import load_calibration_set, to_input

    spec = importlib.util.spec_from_file_location("data_loader", "calibration/data_loader.py")
    loader = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loader)
    env = {"COSINEGATE_CALIB_MODEL": str(out / "model.qdq.onnx"), "COSINEGATE_CALIB_COUNT": "20", "COSINEGATE_CALIB_BATCH": "8"}
    feeds = list(loader.load_data(env))
    assert [f["input"].shape for f in feeds] == [(8, 3, 32, 32), (8, 3, 32, 32), (4, 3, 32, 32)]
    assert all(f["input"].dtype == np.float32 for f in feeds)
    calib = load_calibration_set("cifar10", fake_cifar_root, 20, 0)
    assert calib.ids == manifest["calibration"]["ids"]
    assert np.array_equal(np.concatenate([f["input"] for f in feeds]), to_input(calib.images))

    # reuse of the matching cache works; a cache for another TensorRT version is refused, nothing written
    again = run_script("calibration/calibrate.py", "--checkpoint", ckpt, "--cache-in", out / "calibration.cache",
                       "--method", "minmax", "--trt-version", "8.5", "--policy", "conditional-all", "--out", tmp_path / "again")
    assert again.returncode == 0, again.stderr
    bad = run_script("calibration/calibrate.py", "--checkpoint", ckpt, "--cache-in", out / "calibration.cache",
                     "--method", "minmax", "--trt-version", "10.3", "--out", tmp_path / "bad")
    assert bad.returncode == 2 and "built for TensorRT 8.5.2" in bad.stderr and not (tmp_path / "bad").exists()
    bad = run_script("calibration/calibrate.py", "--checkpoint", ckpt, "--cache-in", out / "calibration.cache",
                     "--method", "entropy", "--trt-version", "8.5", "--out", tmp_path / "bad")
    assert bad.returncode == 2 and "EntropyCalibration2" in bad.stderr and not (tmp_path / "bad").exists()


def test_cli_bad_inputs(tmp_path, fake_cifar_root):
    ckpt = _ckpt(tmp_path, fake_cifar_root)
    paper = _ckpt(tmp_path, fake_cifar_root, "paper")
    common = ["--data", "cifar10", "--data-root", fake_cifar_root]
    cases = [
        ([ckpt, *common, "--num-images", 5], "fewer than the 10 classes"),
        ([ckpt, *common, "--method", "mse"], "argument --method: invalid choice: 'mse'"),
        ([ckpt, *common, "--image-size", 64], "--image-size 64 conflicts with checkpoint"),
        ([paper, *common, "--num-images", 10, "--policy", "conditional-all"], "--forms flat,masked"),
        ([ckpt, *common, "--trt-version", "banana"], "TensorRT version"),
    ]
    for index, (args, message) in enumerate(cases):
        out = tmp_path / f"out{index}"
        result = run_script("calibration/calibrate.py", "--checkpoint", *args, "--out", out)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr and result.stderr.count("error: ") == 1, result.stderr
        assert not out.exists()
