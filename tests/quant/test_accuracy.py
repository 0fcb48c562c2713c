"""FP32 vs INT8 (Q/DQ) of a checkpoint on ONNX Runtime, from plain values."""

import pytest

from cosinegate.errors import CosineGateError
from cosinegate.quant.accuracy import evaluate_checkpoint


def test_int8_accuracy_of_a_checkpoint_names_its_sample(tiny_checkpoint):
    report = evaluate_checkpoint(tiny_checkpoint, ["minmax"], calib_images=10, test_images=6, batch=3, calib_batch=4)
    assert report["num_images"] == 6 and report["calibration_images"] == 10 and list(report["methods"]) == ["minmax"]
    assert len(report["calibration_ids_sha256"]) == 64 and report["checkpoint"] == str(tiny_checkpoint)
    again = evaluate_checkpoint(tiny_checkpoint, ["minmax"], calib_images=10, test_images=6, seed=1, batch=3, calib_batch=4)
    assert again["calibration_ids_sha256"] != report["calibration_ids_sha256"]


@pytest.mark.parametrize("methods, test_images, message", [([], None, "--methods is empty"),
                                                          (["best"], None, "unknown calibration method"),
                                                          (["minmax"], 0, "--test-images must be at least 1")])
def test_methods_and_sizes_are_checked_before_any_work(tiny_checkpoint, methods, test_images, message):
    with pytest.raises(CosineGateError, match=message):
        evaluate_checkpoint(tiny_checkpoint, methods, test_images=test_images)
