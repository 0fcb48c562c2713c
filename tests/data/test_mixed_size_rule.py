"""Issue #25: a folder of mixed sizes is resized per split on the desktop (resize.split_rule: eval, N x N images
included); the preprocessing record says so and the board's run_engine.py applies the same rule."""

import numpy as np
import pytest

from cosinegate.data.imagefolder import load_imagefolder
from cosinegate.models import build_model
from cosinegate.onnx.card import input_resize_of, normalization, preprocessing
from cosinegate.parity.device_check import float_feeds
from cosinegate.trt import run_engine


def _folder(root, sizes):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for label in ("a", "b"):
            (root / split / label).mkdir(parents=True)
            for i, (w, h) in enumerate(sizes):
                pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / label / f"{i}.png")
    return root


def _card_pre(state, size=96):
    model = build_model({"backbone": "resnet20", "mode": "predictive"}, num_classes=2, image_size=size)
    return preprocessing(model, normalization(model), input_resize_of(state))


def _board_feed(path, pre):
    return run_engine.load_inputs([path], pre, run_engine.image_reader())[0][1]


@pytest.fixture
def mixed(tmp_path, monkeypatch):
    monkeypatch.setenv("COSINEGATE_CACHE", str(tmp_path / "cache"))
    return _folder(tmp_path / "photos", [(96, 96), (96, 96), (128, 96)])


def test_a_mixed_folder_records_eval_and_the_board_resizes_its_native_images_as_the_desktop(mixed):
    _, test = load_imagefolder(mixed, image_size=96)
    assert test.rule == "eval"
    state = {"input_resize": test.rule, "config": {"data": {"source": "imagefolder"}}}
    pre = _card_pre(state)
    assert pre["resize"] == "eval"
    index = test.ids.index("test/a/0.png")  # a 96x96 file, resized to 110 and cropped by the desktop
    desktop = float_feeds(test.images[index : index + 1], pre["mean"], pre["std"])[0]["input"][0]
    board = _board_feed(mixed / "test" / "a" / "0.png", pre)
    assert board.dtype == np.float32 and np.array_equal(board, desktop)
    # a graph from before the rule was stored keeps the per-image rule: the 96x96 file as it is
    old = dict(pre, resize="native-or-center-crop")
    assert not np.array_equal(_board_feed(mixed / "test" / "a" / "0.png", old), desktop)


def test_a_folder_of_one_size_stays_native(tmp_path, monkeypatch):
    monkeypatch.setenv("COSINEGATE_CACHE", str(tmp_path / "cache"))
    root = _folder(tmp_path / "photos", [(96, 96), (96, 96)])
    for _ in range(2):  # decoded, then read back from the cache
        _, test = load_imagefolder(root, image_size=96)
        assert test.rule == "native" and test.take([0]).rule == "native"
    pre = _card_pre({"input_resize": test.rule})
    assert pre["resize"] == "native"
    desktop = float_feeds(test.images[:1], pre["mean"], pre["std"])[0]["input"][0]
    assert np.array_equal(_board_feed(root / "test" / test.ids[0].split("/", 1)[1], pre), desktop)


def test_the_rule_of_a_checkpoint():
    assert input_resize_of({"input_resize": "eval"}) == "eval"
    assert input_resize_of({"config": {"data": {"source": "synthetic"}}}) == "native"
    assert input_resize_of({"config": {"data": {"source": "cifar10"}}}) == "native"
    assert input_resize_of({"config": {"data": {"source": "imagefolder"}}}) is None  # older: per image
    assert _card_pre({"config": {"data": {"source": "imagefolder"}}})["resize"] == "native-or-center-crop"


def test_a_training_run_stores_its_test_splits_rule(tiny_checkpoint):
    from cosinegate.training.checkpoint import load_checkpoint

    state = load_checkpoint(tiny_checkpoint)
    assert state["input_resize"] == "native" and input_resize_of(state) == "native"  # the fake CIFAR-10: 32x32
