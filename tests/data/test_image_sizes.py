"""Images beyond 32x32: resize rules, colour modes, EXIF orientation, the per-size cache, the synthetic
set at any size, normalization from the training split, and --image-size carried by the checkpoint."""

import numpy as np
import pytest
import torch

from cosinegate.data import imagefolder, load_dataset, resize
from cosinegate.data import normalization as norm
from cosinegate.errors import CosineGateError


def _two_tone(w, h, inner=(255, 0, 0), outer=(0, 0, 255), keep=0.5):
    """w x h RGB array: `outer` colour with a centred `inner` rectangle covering `keep` of each side."""
    a = np.empty((h, w, 3), np.uint8)
    a[:] = outer
    y0, x0 = int(h * (1 - keep) / 2), int(w * (1 - keep) / 2)
    a[y0 : h - y0, x0 : w - x0] = inner
    return a


def _save(path, array, mode="RGB", **kw):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array)
    if mode != "RGB":
        image = image.convert(mode)
    image.save(path, **kw)


def test_eval_and_train_rules_resize_the_shorter_side_then_center_crop():
    from PIL import Image

    wide = Image.fromarray(_two_tone(300, 100))  # 3:1, red centre 150x50
    evaluated = resize.fit(wide, 32, "eval")  # shorter side -> 37, 111x37, center 32x32
    assert evaluated.shape == (32, 32, 3) and resize.resized_side(32) == 37 and resize.resized_side(224) == 256
    assert tuple(evaluated[16, 16]) == (255, 0, 0) and tuple(evaluated[16, 0]) == (255, 0, 0)  # the crop is inside the red centre
    trained = resize.fit(wide, 32, "train")
    assert trained.shape == (37, 37, 3)  # random N x N crops are taken from it in torch
    assert np.array_equal(resize.center_crop(trained[None], 32)[0][2:-2, 2:-2], evaluated[2:-2, 2:-2])
    tall = resize.fit(Image.fromarray(_two_tone(64, 200)), 64, "eval")
    assert tall.shape == (64, 64, 3)
    native = resize.fit(Image.fromarray(_two_tone(32, 32)), 32, "native")
    assert np.array_equal(native, _two_tone(32, 32))


def test_split_rule_and_cache_key():
    assert resize.split_rule([(32, 32), (32, 32)], 32, training=True) == "native"
    assert resize.split_rule([(32, 32), (40, 32)], 32, training=True) == "train"
    assert resize.split_rule([(224, 224)], 64, training=False) == "eval"
    keys = {resize.rule_key(size, rule) for size in (64, 224) for rule in ("eval", "train")}
    assert len(keys) == 4 and resize.rule_key(224, "eval") == "224-eval-short256-crop224"


def test_folder_of_any_size_mode_and_orientation(tmp_path):
    """Grayscale, palette, CMYK JPEG, RGBA PNG and an EXIF-rotated JPEG all become upright RGB 48x48."""
    from PIL import Image

    root = tmp_path / "mixed"
    grey = np.full((90, 120, 3), 128, np.uint8)
    _save(root / "train/a/grey.png", grey, "L")
    _save(root / "train/a/palette.png", _two_tone(120, 90, inner=(0, 255, 0), outer=(0, 255, 0)), "P")
    _save(root / "train/b/cmyk.jpg", _two_tone(100, 100, inner=(200, 40, 40), outer=(200, 40, 40)), "CMYK", quality=95)
    rgba = np.dstack([_two_tone(64, 80, inner=(10, 20, 200), outer=(10, 20, 200)), np.full((80, 64), 90, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(root / "train/b/alpha.png")
    # stored 120 wide x 60 high, left half red, right half blue; EXIF orientation 6 = rotate 90 degrees clockwise
    stored = np.zeros((60, 120, 3), np.uint8)
    stored[:, :60] = (255, 0, 0)
    stored[:, 60:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    (root / "test/a").mkdir(parents=True)
    Image.fromarray(stored).save(root / "test/a/rotated.jpg", exif=exif.tobytes(), quality=95)
    _save(root / "test/b/plain.png", _two_tone(50, 70))
    train, test = imagefolder.load_imagefolder(root, 48)
    assert train.images.shape == (4, 48, 48, 3) and test.images.shape == (2, 48, 48, 3)
    by_id = dict(zip(train.ids, train.images))
    assert np.abs(by_id["train/a/grey.png"].astype(int) - 128).max() <= 1
    assert tuple(by_id["train/a/palette.png"][24, 24]) == (0, 255, 0)
    assert np.abs(by_id["train/b/cmyk.jpg"][24, 24].astype(int) - (200, 40, 40)).max() <= 12
    assert tuple(by_id["train/b/alpha.png"][24, 24]) == (10, 20, 200)
    rotated = test.images[test.ids.index("test/a/rotated.jpg")].astype(int)  # displayed upright: 60 wide x 120 high
    assert rotated[5, 24, 0] > 200 and rotated[5, 24, 2] < 60  # top: the stored left half (red)
    assert rotated[42, 24, 2] > 200 and rotated[42, 24, 0] < 60  # bottom: the stored right half (blue)


def test_cache_per_size_and_rule(tmp_path, session_cache, monkeypatch):
    root = tmp_path / "tree"
    for split, count in (("train", 3), ("test", 2)):
        for cls in ("x", "y"):
            for i in range(count):
                _save(root / split / cls / f"{i}.png", _two_tone(80 + 10 * i, 60))
    before = set(session_cache.glob("imagefolder-*.npz"))
    train64, test64 = imagefolder.load_imagefolder(root, 64)
    train_t, _ = imagefolder.load_imagefolder(root, 64, training=True)
    train32, _ = imagefolder.load_imagefolder(root, 32)
    assert train64.images.shape[1:] == (64, 64, 3) and train_t.images.shape[1:] == (73, 73, 3) and train32.images.shape[1] == 32
    created = sorted(p.name for p in set(session_cache.glob("imagefolder-*.npz")) - before)
    assert len(created) == 5  # train and test at 64 (eval), train at 64 (train), train and test at 32
    assert any("64-train-short73-crop73" in name for name in created)

    def no_decode(*args):
        raise AssertionError("decoded again although cached")

    monkeypatch.setattr(imagefolder, "_decode_all", no_decode)
    again, _ = imagefolder.load_imagefolder(root, 64)
    assert np.array_equal(again.images, train64.images)
    with pytest.raises(AssertionError, match="decoded again"):
        imagefolder.load_imagefolder(root, 96)


def test_synthetic_at_any_size():
    from cosinegate.data.synthetic import load_synthetic

    small = load_synthetic(200, 50, seed=3)
    big = load_synthetic(200, 50, seed=3, image_size=48)
    assert big[0].images.shape == (200, 48, 48, 3) and big[1].images.shape == (50, 48, 48, 3)
    assert np.array_equal(big[0].labels, small[0].labels) and big[0].ids == small[0].ids
    # the same pictures, scaled: the mean colour of each image survives the resize
    assert np.abs(big[0].images.mean((1, 2)) - small[0].images.mean((1, 2))).max() < 3
    assert np.array_equal(load_synthetic(200, 50, seed=3, image_size=48)[0].images, big[0].images)  # cached, deterministic


def test_load_dataset_refuses_data_of_another_size():
    from cosinegate.data import check_images
    from cosinegate.data.imageset import ImageSet

    images = ImageSet(np.zeros((2, 64, 64, 3), np.uint8), np.zeros(2, np.int64), ["a", "b"], ["x"])
    check_images(images, "custom", 64)
    with pytest.raises(CosineGateError, match="expected uint8 32x32 RGB images.*--image-size 32"):
        check_images(images, "custom", 32)


def test_normalization_values():
    images = np.zeros((4, 2, 2, 3), np.uint8)
    images[:2, ..., 0] = 255  # channel 0: half 1.0, half 0.0 -> mean 0.5, std 0.5
    images[..., 1] = 51  # channel 1: constant 0.2
    images[..., 2] = np.array([0, 255, 0, 255], np.uint8)[:, None, None]
    mean, std = norm.channel_stats(images, chunk=3)  # chunked accumulation gives the plain result
    assert np.allclose(mean, [0.5, 0.2, 0.5]) and np.allclose(std, [0.5, 0.0, 0.5], atol=1e-6)
    with pytest.raises(CosineGateError, match="constant colour channel"):
        norm.resolve("auto", images)
    images[0, 0, 0, 1] = 0
    auto = norm.resolve("auto", images)
    assert auto["source"] == "training split (4 images)" and auto["mean"][0] == pytest.approx(0.5)
    assert norm.resolve("imagenet", images)["mean"] == [0.485, 0.456, 0.406]
    assert norm.parse_flag("0.5,0.5,0.5/0.25,0.2,0.1") == [[0.5, 0.5, 0.5], [0.25, 0.2, 0.1]]
    for bad in ("0.5,0.5/0.2,0.2", "0.5,0.5,0.5/0,1,1", "fancy"):
        with pytest.raises(CosineGateError, match="normalization"):
            norm.parse_flag(bad)
    assert norm.of_checkpoint({})["mean"] == list(norm.NAMED["cifar10"][0])  # old checkpoints: CIFAR-10 constants


@pytest.fixture(scope="module")
def run64(tmp_path_factory):
    """A predictive ResNet-18 trained 1 epoch at --image-size 64 on a 3-class folder of 96x72 PNGs (in-process)."""
    from cosinegate.config import load_config, validate
    from cosinegate.training.loop import train

    root = tmp_path_factory.mktemp("folder64") / "images"
    rng = np.random.default_rng(0)
    for split, count in (("train", 10), ("test", 4)):
        for c, colour in enumerate(((220, 40, 40), (40, 220, 40), (40, 40, 220))):
            for i in range(count):
                array = np.clip(_two_tone(96, 72, inner=colour, outer=(100, 100, 100)) + rng.normal(0, 20, (72, 96, 3)), 0, 255)
                _save(root / split / f"c{c}" / f"{i}.png", array.astype(np.uint8))
    config = load_config("balanced")
    config["model"]["backbone"] = "resnet18"
    config["data"].update(source="imagefolder", root=str(root), image_size=64, val_fraction=0.2)
    config["optim"].update(epochs=1, batch_size=8)
    out = tmp_path_factory.mktemp("run64") / "run"
    threads = torch.get_num_threads()
    try:
        train(validate(config), out, "cpu", progress=False)
    finally:
        torch.set_num_threads(threads)
    return root, out


def test_training_at_64_stores_size_and_normalization(run64):
    from cosinegate.evaluation import run_model
    from cosinegate.training.checkpoint import load_checkpoint, model_from_checkpoint

    root, out = run64
    state = load_checkpoint(out / "last.pt")
    assert state["config"]["data"]["image_size"] == 64
    train, _ = load_dataset("imagefolder", root, image_size=64, training=True)
    assert train.images.shape[1] == 73  # stored for random 64x64 crops
    measured = state["normalization"]
    assert measured["source"].startswith("training split") and measured["mean"] != list(norm.NAMED["cifar10"][0])
    model, _ = model_from_checkpoint(out / "last.pt")
    assert model.image_size == 64 and model.normalization == measured
    _, test = load_dataset("imagefolder", root, image_size=64)
    with_own = run_model(model, test).logits
    model.normalization = norm.named("cifar10")
    assert not np.allclose(run_model(model, test).logits, with_own)  # evaluation really applies the stored numbers
    with pytest.raises(CosineGateError, match="--image-size 32 conflicts with checkpoint .*64x64"):
        model_from_checkpoint(out / "last.pt", image_size=32)


def _script(folder, name):
    """A command's module (cosinegate.cli.NAME), imported in-process (faster than a subprocess per stage)."""
    import importlib

    return importlib.import_module(f"cosinegate.cli.{name}")


def test_every_stage_at_64_with_the_checkpoint_size(run64, tmp_path):
    """evaluate, forced gates, export (conditional batch 1, masked batch 2), parity, INT8 calibration and
    parity, and bench (conditional at batch 1, masked at batch 2) for a ResNet-18 at 64x64."""
    import json

    from cosinegate.training.checkpoint import load_checkpoint

    root, out = run64
    data = ["--data", "imagefolder", "--data-root", str(root)]
    evaluate = _script("train", "evaluate")
    evaluate.main(["--checkpoint", str(out / "last.pt"), *data, "--json", str(tmp_path / "eval.json")])
    report = json.loads((tmp_path / "eval.json").read_text())
    from cosinegate.macs import mac_table

    assert report["image_size"] == 64 and report["num_images"] == 12
    assert report["dense_macs"] == mac_table("resnet18", "none", 3, image_size=64).dense
    with pytest.raises(CosineGateError, match="--image-size 224 conflicts with checkpoint"):
        evaluate.main(["--checkpoint", str(out / "last.pt"), *data, "--image-size", "224"])
    ckpt = tmp_path / "forced.pt"
    _script("deploy", "force_gates").main(["--checkpoint", str(out / "last.pt"), "--skip", "0.5", "--samples", "12", "--out", str(ckpt)])
    state = load_checkpoint(ckpt)
    assert state["skip_rates"] == [0.5] * 8 and state["forced_gates"]["skip"] == 0.5
    export = _script("deploy", "export_onnx")
    export.main(["--checkpoint", str(ckpt), "--out", str(tmp_path / "c.onnx")])
    manifest = json.loads((tmp_path / "c.onnx.json").read_text())
    assert manifest["input"]["shape"] == [1, 3, 64, 64] and manifest["num_if"] == 8
    assert manifest["input"]["normalization"]["mean"] == state["normalization"]["mean"]
    export.main(["--checkpoint", str(ckpt), "--out", str(tmp_path / "m.onnx"), "--form", "masked", "--batch", "2"])
    parity = _script("deploy", "parity")
    for graph in ("c.onnx", "m.onnx"):
        assert parity.main(["--checkpoint", str(ckpt), "--onnx", str(tmp_path / graph), *data, "--samples", "12"]) == 0
    _script("calibration", "calibrate").main(["--checkpoint", str(ckpt), *data, "--num-images", "9", "--method", "minmax",
                                              "--forms", "conditional", "--out", str(tmp_path / "int8")])
    assert parity.main(["--checkpoint", str(ckpt), "--onnx", str(tmp_path / "int8/model.qdq.conditional.onnx"), *data,
                        "--samples", "12", "--int8"]) in (0, 1)  # an untrained net at INT8 need not pass; it must run
    bench = _script("deploy", "bench")
    fast = ["--warmup", "1", "--iterations", "4", "--samples", "12", "--threads", "1", *data]
    assert bench.main(["--onnx", str(tmp_path / "c.onnx"), *fast, "--json", str(tmp_path / "b1.json")]) == 0
    b1 = json.loads((tmp_path / "b1.json").read_text())
    assert b1["skip_rate"] == pytest.approx(0.5) and b1["dense_macs"] == report["dense_macs"]
    assert bench.main(["--onnx", str(tmp_path / "m.onnx"), *fast, "--batch", "2", "--json", str(tmp_path / "b2.json")]) == 0
    assert json.loads((tmp_path / "b2.json").read_text())["skip_rate"] == pytest.approx(0.5)
    with pytest.raises(CosineGateError, match="--image-size 32 conflicts with .*c.onnx, made for 64x64"):
        bench.main(["--onnx", str(tmp_path / "c.onnx"), *fast, "--image-size", "32"])


def test_bundle_at_the_checkpoint_size(run64, tmp_path, monkeypatch):
    """The Jetson bundle of a 48x48 checkpoint (a small CIFAR backbone: the bundle path does not depend on the
    architecture, the ImageNet ones are covered above): its reference inputs have the checkpoint's shape."""
    from cosinegate.config import load_config, validate
    from cosinegate.models import build_model
    from cosinegate.trt import build as trt_build
    from cosinegate.trt.targets import HostInfo
    from cosinegate.training.checkpoint import save_checkpoint

    root, _ = run64
    config = load_config("balanced")
    config["data"].update(source="imagefolder", root=str(root), image_size=48)
    config = validate(config)
    torch.manual_seed(0)
    model = build_model(config["model"], num_classes=3, image_size=48)
    ckpt = tmp_path / "r20-48.pt"
    save_checkpoint(ckpt, config=config, num_classes=3, model=model.state_dict(), epoch=0, normalization=norm.named("imagenet"),
                    skip_rates=[0.0, 0.5] * 4 + [0.0])
    monkeypatch.setattr(trt_build, "detect_host", lambda: HostInfo("x86_64", None, None))
    data = ["--data", "imagefolder", "--data-root", str(root)]
    assert _script("deploy", "build_engine").main(["--target", "jetson-orin", "--checkpoint", str(ckpt), *data,
                                                   "--out", str(tmp_path / "engines")]) == 0
    inputs = list((tmp_path / "engines").rglob("inputs*.npz"))
    assert inputs
    from cosinegate.parity.device_check import load_inputs

    feeds = load_inputs(inputs[0])
    assert feeds and all(feed["input"].shape == (1, 3, 48, 48) for feed in feeds)


def _folder_of(root, side, classes=("x", "y"), per_class=2):
    rng = np.random.default_rng(side)
    for split in ("train", "test"):
        for cls in classes:
            for i in range(per_class):
                _save(root / split / cls / f"{i}.png", rng.integers(0, 256, (side, side, 3), dtype=np.uint8))
    return root


def test_stages_say_when_the_folders_images_are_resized(tmp_path):
    """A model trained at 32 on a folder of 96x96 images: one line says so and how they are resized; none when the
    images are the model's size. The cached decode says it again (the sizes are kept with the arrays)."""
    from cosinegate.data.choice import DataOrigin, choose_data

    big = _folder_of(tmp_path / "big", 96)
    lines = []
    choose_data(DataOrigin("imagefolder", str(big), ("x", "y"), 32), log=lines.append)
    assert lines[1:] == ["note: images are 96x96; the checkpoint was trained at 32x32: they are resized (shorter side "
                         "to 37, center crop 32)"], lines
    assert imagefolder.load_imagefolder(big, 32)[1].found_sizes == "96x96"  # from the cache this time
    small = _folder_of(tmp_path / "small", 32)
    lines = []
    choose_data(DataOrigin("imagefolder", str(small), ("x", "y"), 32), log=lines.append)
    assert len(lines) == 1 and lines[0].startswith("data: imagefolder"), lines
    assert resize.describe_sizes([(96, 96), (128, 96), (96, 96)]) == "96x96 and 128x96"
    assert resize.describe_sizes([(9, 9), (64, 48), (128, 96)]) == "3 sizes, 9x9 to 128x96"


def test_training_says_the_size_it_trains_at_and_how_to_change_it(tmp_path):
    from conftest import tiny_config

    from cosinegate.training.loop import Trainer

    config = tiny_config(tmp_path)
    config["data"].update(source="imagefolder", root=str(_folder_of(tmp_path / "big", 96, per_class=4)), val_fraction=0.0)
    lines = []
    stopped = Trainer(config, tmp_path / "run", log=lines.append, progress=False).run(stop_after=0)
    assert (stopped.done, stopped.epochs) == (0, config["optim"]["epochs"])
    assert ("note: images are 96x96; training at 32x32: they are resized (shorter side to 37, random 32x32 crops of its "
            "37x37 center); --image-size N (data.image_size) trains at another size, --image-size 96 at theirs") in lines, lines
