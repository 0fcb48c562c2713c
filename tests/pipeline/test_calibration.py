"""INT8 that connects (issue 25, item 4): calibrate writes int8/ beside the checkpoint, and build_engine reuses a
calibration there only when it was made from the same checkpoint (SHA-256) and data, saying so in one line; any
other calibration there is named with the reason it was not reused."""

import json
import shutil
from types import SimpleNamespace

import pytest

import cosinegate.cli.build_engine as build_engine

from cosinegate.pipeline.calibration import CalibrationSettings, calibrate_checkpoint, find_calibration
from cosinegate.trt import build as trt_build
from cosinegate.trt.targets import HostInfo


@pytest.fixture(scope="module")
def calibrated_run(dyn_checkpoint, fake_cifar_root, tmp_path_factory):
    """RUN/best.pt (the dynamic checkpoint) and its calibration, written where calibrate writes by default."""
    run = tmp_path_factory.mktemp("calibrated") / "run"
    run.mkdir()
    shutil.copy2(dyn_checkpoint, run / "best.pt")
    result = calibrate_checkpoint(CalibrationSettings(checkpoint=str(run / "best.pt"), calib_images=20, method="minmax"))
    assert result.out == run / "int8" and (run / "int8" / "manifest.json").is_file()
    return run, SimpleNamespace(source="cifar10", root=str(fake_cifar_root))


def test_a_calibration_of_the_same_checkpoint_and_data_is_found(calibrated_run):
    run, data = calibrated_run
    lines = []
    assert find_calibration(run / "best.pt", data, "conditional", lines.append) == run / "int8"
    assert len(lines) == 1 and lines[0].startswith(f"reused the calibration in {run / 'int8'} (same checkpoint sha256 ")
    assert "same data cifar10" in lines[0]


@pytest.mark.parametrize("change, why", [
    ("checkpoint", "it was made from another checkpoint (sha256 "),
    ("data", "it was calibrated on other data (cifar10 at "),
    ("form", "it has no masked Q/DQ graph (calibrate with --forms flat,masked)"),
])
def test_another_calibration_is_never_reused_silently(calibrated_run, tmp_path, change, why):
    run, data = calibrated_run
    checkpoint, form = run / "best.pt", "conditional"
    if change == "checkpoint":  # another checkpoint in the same run folder: its int8/ is the same folder
        checkpoint = run / "other.pt"
        checkpoint.write_bytes((run / "best.pt").read_bytes() + b"\0")
    elif change == "data":
        data = SimpleNamespace(source="cifar10", root=str(tmp_path))
    else:
        form = "masked"
    lines = []
    assert find_calibration(checkpoint, data, form, lines.append) is None
    assert len(lines) == 1 and lines[0].startswith(f"not reusing the calibration in {run / 'int8'}: {why}"), lines


@pytest.mark.parametrize("field, value", [("calibration", "images"), ("calibration", ["images"]), ("onnx_sha256", 3)])
def test_a_manifest_with_a_field_of_the_wrong_kind_is_a_reason_not_a_traceback(calibrated_run, tmp_path, field, value):
    """A handed run's int8/manifest.json with the right checkpoint_sha256 and "calibration": "images" was an
    AttributeError in build-engine; now it is a reason not to reuse the folder."""
    run, data = calibrated_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    manifest = json.loads((copy / "int8" / "manifest.json").read_text())
    (copy / "int8" / "manifest.json").write_text(json.dumps({**manifest, field: value}))
    lines = []
    assert find_calibration(copy / "best.pt", data, "conditional", lines.append) is None
    assert "its manifest.json is not one calibrate writes" in lines[0], lines


def test_a_changed_calibration_folder_is_not_reused(calibrated_run, tmp_path):
    run, data = calibrated_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    (copy / "int8" / "calibration.cache").write_text((copy / "int8" / "calibration.cache").read_text() + "\n")
    lines = []
    assert find_calibration(copy / "best.pt", data, "conditional", lines.append) is None
    assert "calibration.cache is not the file its manifest.json names" in lines[0], lines


def test_build_engine_reuses_the_calibration_beside_the_run(calibrated_run, tmp_path, monkeypatch, capsys):
    """The README path: calibrate (default --out), then build-engine --precision int8 uses that calibration."""
    import cosinegate.pipeline.int8_check as int8_check

    run, _ = calibrated_run
    monkeypatch.setattr(trt_build, "detect_host", lambda: HostInfo("x86_64", None, None))
    monkeypatch.setattr(int8_check, "qdq_preview", lambda *a: {"passed": True, "top1_agreement": 1.0, "gate_agreement": 1.0,
                                                          "num_samples": 1})
    out = tmp_path / "engines"
    assert build_engine.main(["--target", "jetson-orin", "--checkpoint", str(run / "best.pt"), "--precision", "int8",
                              "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"reused the calibration in {run / 'int8'} (same checkpoint sha256" in printed, printed
    shipped = json.loads((out / "run-conditional-int8-bundle" / "calibration" / "manifest.json").read_text())
    assert shipped == json.loads((run / "int8" / "manifest.json").read_text()) and shipped["method"] == "minmax"
    assert not (out / ".work" / "run" / "calibration").exists()  # not calibrated again
