"""A checkpoint evaluated on its own data: the report says what it used."""

import pytest

from cosinegate.errors import CosineGateError
from cosinegate.training.evaluate import evaluate_checkpoint


def test_a_checkpoint_is_evaluated_on_its_own_data_and_the_report_says_so(tiny_checkpoint):
    from cosinegate.training.checkpoint import load_checkpoint

    state = load_checkpoint(tiny_checkpoint)
    rep = evaluate_checkpoint(tiny_checkpoint, split="train", subset=20, progress=False)
    assert (rep["split"], rep["epochs_trained"], rep["checkpoint"]) == ("train", state["epoch"] + 1, str(tiny_checkpoint))
    assert rep["data"]["source"] == state["config"]["data"]["source"] and rep["num_images"] == 20
    assert len(rep["executed_macs_per_image"]) == 20
    from cosinegate.data import load_dataset

    train, test = load_dataset(state["config"]["data"]["source"], state["config"]["data"]["root"])
    assert evaluate_checkpoint(tiny_checkpoint, progress=False)["num_images"] == len(test) != len(train)
    other = "resnet56" if rep["backbone"] != "resnet56" else "resnet20"
    with pytest.raises(CosineGateError, match=other):
        evaluate_checkpoint(tiny_checkpoint, backbone=other)
