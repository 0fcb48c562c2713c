"""Issue 13: every path that draws calibration or benchmark images takes the model's own data by default,
says which it used, records it, and refuses (naming the override) when that data is absent."""

import importlib.util
import json

import pytest
from conftest import ROOT

from cosinegate.errors import CosineGateError
from cosinegate.training.checkpoint import load_checkpoint, save_checkpoint

import cosinegate.cli.force_gates as force_gates  # noqa: E402
import cosinegate.cli.gpu_gate_sync as gpu_gate_sync  # noqa: E402


def _loader():
    spec = importlib.util.spec_from_file_location("data_loader", ROOT / "calibration" / "data_loader.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _moved(tiny_checkpoint, tmp_path):
    """The tiny checkpoint, its data root pointing where nothing is."""
    state = load_checkpoint(tiny_checkpoint)
    state["config"]["data"]["root"] = str(tmp_path / "gone")
    save_checkpoint(tmp_path / "moved.pt", **{k: v for k, v in state.items() if k != "format"})
    return tmp_path / "moved.pt"


def test_data_loader_draws_the_checkpoints_data_and_says_so(tiny_checkpoint, fake_cifar_root, tmp_path):
    loader, lines = _loader(), []
    calib, normalization, record = loader.calibration_set({"COSINEGATE_CALIB_CHECKPOINT": str(tiny_checkpoint),
                                                           "COSINEGATE_CALIB_COUNT": "20"}, log=lines.append)
    state = load_checkpoint(tiny_checkpoint)
    assert (calib.source, record["source"], record["root"]) == ("cifar10", "cifar10", str(fake_cifar_root))
    assert record["default"] == "model's training data" and "checkpoint's training data" in lines[0]
    assert calib.images.shape[1:] == (state["config"]["data"].get("image_size") or 32,) * 2 + (3,)
    assert normalization["mean"] == state["normalization"]["mean"]
    with pytest.raises(CosineGateError, match="COSINEGATE_CALIB_MODEL=model.onnx"):
        loader.calibration_set({"COSINEGATE_CALIB_COUNT": "20"})
    with pytest.raises(CosineGateError, match="not here; set COSINEGATE_CALIB_DATA_ROOT=DIR"):
        loader.calibration_set({"COSINEGATE_CALIB_CHECKPOINT": str(_moved(tiny_checkpoint, tmp_path))})


def test_force_gates_and_gpu_gate_sync_take_the_checkpoints_data(tiny_checkpoint, fake_cifar_root, tmp_path):
    report = tmp_path / "f.json"
    assert force_gates.main(["--checkpoint", str(tiny_checkpoint), "--samples", "12", "--out", str(tmp_path / "f.pt"),
                             "--json", str(report)]) == 0
    forced = json.loads(report.read_text())
    assert forced["data"]["source"] == "cifar10" and forced["data"]["root"] == str(fake_cifar_root)
    assert forced["outputs"]["out"]["sha256"] and len(forced["skip_rates"]) == 9
    sync = tmp_path / "g.json"
    assert gpu_gate_sync.main(["--checkpoint", str(tiny_checkpoint), "--device", "cpu", "--iterations", "2", "--warmup", "1",
                               "--samples", "2", "--json", str(sync)]) == 0
    assert json.loads(sync.read_text())["data"]["default"] == "model's training data"
    moved = _moved(tiny_checkpoint, tmp_path)
    for main, extra in ((force_gates.main, ["--out", str(tmp_path / "x.pt")]), (gpu_gate_sync.main, ["--device", "cpu"])):
        with pytest.raises(CosineGateError, match="not here; pass --data-root DIR"):
            main(["--checkpoint", str(moved), *extra])
    assert not (tmp_path / "x.pt").exists()
