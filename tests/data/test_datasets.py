"""Data sources (synthetic, cifar10 pickles, imagefolder + cache, the real CIFAR folder), subsets, augmentation."""

import os
import time

import numpy as np
import pytest
import torch

from conftest import FAKE_CLASSES, REAL_CIFAR, requires_real_cifar, write_image_tree
from cosinegate.data import balanced_subset, load_dataset, split_holdout
from cosinegate.data import imagefolder
from cosinegate.data.augment import random_crop_flip, to_tensor
from cosinegate.data.cifar10 import load_cifar10
from cosinegate.data.imageset import ImageSet, check_images
from cosinegate.data.normalization import CIFAR10
from cosinegate.data.synthetic import CLASSES, generate, load_synthetic
from cosinegate.errors import CosineGateError

MEAN, STD = CIFAR10["mean"], CIFAR10["std"]  # to_tensor's default normalization


# ---- synthetic -------------------------------------------------------------------------------------


def test_synthetic_deterministic_from_seed():
    a, la = generate(60, seed=3)
    b, lb = generate(60, seed=3)
    c, _ = generate(60, seed=4)
    assert a.shape == (60, 32, 32, 3) and a.dtype == np.uint8 and la.dtype == np.int64
    assert np.array_equal(a, b) and np.array_equal(la, lb)
    assert not np.array_equal(a, c)
    assert np.bincount(la, minlength=10).tolist() == [6] * 10
    assert a.std() > 10  # not blank


def test_load_synthetic_splits():
    train, test = load_synthetic(train_size=50, test_size=20)
    assert len(CLASSES) == 10 and train.classes == CLASSES and test.classes == CLASSES
    assert train.images.shape == (50, 32, 32, 3) and test.images.shape == (20, 32, 32, 3)
    assert set(train.labels.tolist()) == set(range(10))
    assert not np.array_equal(train.images[:20], test.images)  # disjoint seeds
    assert train.ids[0] == "synthetic/train/0" and len(set(train.ids)) == 50


# ---- cifar10 pickle batches --------------------------------------------------------------------------


def test_cifar10_pickles(fake_cifar):
    root, written = fake_cifar
    for path in (root, root / "cifar-10-batches-py"):  # the parent or the batch folder itself
        train, test = load_cifar10(path, allow_download=False)
        assert train.classes == FAKE_CLASSES
        assert train.images.shape == (300, 32, 32, 3) and test.images.shape == (100, 32, 32, 3)
        assert np.array_equal(train.images, written["train"][0])  # CHW rows -> HWC, in batch order
        assert np.array_equal(train.labels, written["train"][1]) and np.array_equal(test.labels, written["test"][1])
        assert np.array_equal(test.images, written["test"][0])


def test_cifar10_missing_without_download(tmp_path):
    with pytest.raises(CosineGateError, match="no CIFAR-10 python batches.*--data-root"):
        load_cifar10(tmp_path, allow_download=False)


def test_cifar10_corrupt_batch(tmp_path, fake_cifar):
    import shutil

    folder = tmp_path / "cifar-10-batches-py"
    shutil.copytree(fake_cifar[0] / "cifar-10-batches-py", folder)
    (folder / "data_batch_3").write_bytes(b"garbage")
    with pytest.raises(CosineGateError, match="data_batch_3"):
        load_cifar10(tmp_path, allow_download=False)


def test_load_dataset_cifar10(fake_cifar_root):
    train, test = load_dataset("cifar10", fake_cifar_root)
    assert len(train) == 300 and len(test) == 100


def test_load_dataset_errors():
    with pytest.raises(CosineGateError, match="unknown data source 'mnist'"):
        load_dataset("mnist")
    with pytest.raises(CosineGateError, match="needs --data-root"):
        load_dataset("imagefolder")


# ---- imagefolder -------------------------------------------------------------------------------------


def test_imagefolder_decodes_and_caches(image_tree, session_cache, monkeypatch):
    root, arrays = image_tree
    before = set(session_cache.glob("imagefolder-*.npz"))
    train, test = imagefolder.load_imagefolder(root)
    assert train.classes == test.classes == ["ant", "bee", "cat"]
    assert len(train) == 12 and len(test) == 6
    assert train.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert train.ids[1] == "train/ant/001.png"
    assert np.array_equal(train.images[1], arrays["train/ant/001.png"])  # png: lossless
    assert np.abs(train.images[0].astype(int) - arrays["train/ant/000.jpg"]).max() <= 3  # jpg: lossy, decoded
    created = set(session_cache.glob("imagefolder-*.npz")) - before
    assert len(created) == 2  # train and test, in COSINEGATE_CACHE, not in the data folder
    assert not list(root.rglob("*.npz"))

    def no_decode(*args):
        raise AssertionError("decoded again although cached")

    monkeypatch.setattr(imagefolder, "_decode_all", no_decode)
    train2, test2 = imagefolder.load_imagefolder(root)
    assert np.array_equal(train2.images, train.images) and train2.ids == train.ids
    # a changed folder is decoded again
    from PIL import Image

    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(root / "train" / "bee" / "999.png")
    with pytest.raises(AssertionError, match="decoded again"):
        imagefolder.load_imagefolder(root)


def test_imagefolder_read_only_data_folder(tmp_path):
    root = tmp_path / "ro"
    write_image_tree(root, classes=("x", "y"), train_per_class=2, test_per_class=1)
    for dirpath, _, _ in os.walk(root):
        os.chmod(dirpath, 0o555)
    try:
        train, _ = imagefolder.load_imagefolder(root)
        assert len(train) == 4
    finally:
        for dirpath, _, _ in os.walk(root):
            os.chmod(dirpath, 0o755)


def test_imagefolder_cache_dir_default(monkeypatch, tmp_path):
    monkeypatch.delenv("COSINEGATE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert imagefolder.cache_dir() == tmp_path / "cosinegate"


def test_imagefolder_unreadable_files_are_named(tmp_path):
    root = tmp_path / "bad"
    write_image_tree(root, classes=("a",), train_per_class=2, test_per_class=1)
    (root / "train" / "a" / "broken.png").write_bytes(b"not a png")
    (root / "train" / "a" / "empty.jpg").write_bytes(b"")
    with pytest.raises(CosineGateError, match=r"2 unreadable image\(s\) in train/: .*broken.png, .*empty.jpg; remove or replace"):
        imagefolder.load_imagefolder(root)


def test_imagefolder_layout_errors(tmp_path):
    with pytest.raises(CosineGateError, match="does not exist"):
        imagefolder.load_imagefolder(tmp_path / "nope")
    (tmp_path / "flat").mkdir()
    with pytest.raises(CosineGateError, match="no train/ folder"):
        imagefolder.load_imagefolder(tmp_path / "flat")
    (tmp_path / "empty" / "train" / "a").mkdir(parents=True)
    (tmp_path / "empty" / "test" / "a").mkdir(parents=True)
    with pytest.raises(CosineGateError, match="no images under"):
        imagefolder.load_imagefolder(tmp_path / "empty")
    write_image_tree(tmp_path / "mismatch", classes=("a", "b"), train_per_class=1, test_per_class=1)
    (tmp_path / "mismatch" / "test" / "b").rename(tmp_path / "mismatch" / "test" / "c")
    with pytest.raises(CosineGateError, match=r"class folders differ.*only in train: \['b'\].*only in test: \['c'\]"):
        imagefolder.load_imagefolder(tmp_path / "mismatch")


def test_check_images():
    bad = ImageSet(np.zeros((2, 28, 28, 3), np.uint8), np.zeros(2, np.int64), ["a", "b"], ["x"])
    with pytest.raises(CosineGateError, match="32x32"):
        check_images(bad, "mnist train")


@requires_real_cifar
def test_real_cifar10_folder(monkeypatch):
    """Load only, through the user's cache (decoded once per machine, later runs read the cache)."""
    import conftest

    monkeypatch.setenv("COSINEGATE_CACHE", str(conftest.USER_CACHE))
    train, test = imagefolder.load_imagefolder(REAL_CIFAR)
    assert train.classes == ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    assert train.images.shape == (50000, 32, 32, 3) and test.images.shape == (10000, 32, 32, 3)
    assert np.bincount(train.labels).tolist() == [5000] * 10 and np.bincount(test.labels).tolist() == [1000] * 10
    assert 115 < train.images.mean() < 127  # real photos (CIFAR-10 pixel mean ~121), not blank
    start = time.time()
    imagefolder.load_imagefolder(REAL_CIFAR)
    assert time.time() - start < 30, "second load must read the cache, not decode 60,000 JPEGs"


# ---- subsets -----------------------------------------------------------------------------------------


def _set(n=200, classes=10, seed=0):
    images, labels = generate(n, seed)
    return ImageSet(images, labels % classes, [str(i) for i in range(n)], [str(c) for c in range(classes)])


def test_balanced_subset():
    data = _set()
    sub = balanced_subset(data, 30, seed=1)
    assert len(sub) == 30 and np.bincount(sub.labels).tolist() == [3] * 10
    again = balanced_subset(data, 30, seed=1)
    assert sub.ids == again.ids and np.array_equal(sub.images, again.images)
    assert balanced_subset(data, 30, seed=2).ids != sub.ids
    odd = balanced_subset(data, 25, seed=1)
    assert sorted(np.bincount(odd.labels).tolist()) == [2] * 5 + [3] * 5
    with pytest.raises(CosineGateError, match="only 200"):
        balanced_subset(data, 500)


def test_split_holdout():
    data = _set()
    train, held = split_holdout(data, 0.1, seed=0)
    assert len(held) == 20 and len(train) == 180
    assert not set(train.ids) & set(held.ids)
    assert np.bincount(held.labels).tolist() == [2] * 10
    same, none = split_holdout(data, 0.0)
    assert none is None and len(same) == 200


# ---- augmentation ------------------------------------------------------------------------------------


def test_to_tensor_normalizes():
    images = np.zeros((2, 32, 32, 3), np.uint8)
    images[1] = 255
    x = to_tensor(images)
    assert x.shape == (2, 3, 32, 32) and x.dtype == torch.float32
    assert torch.allclose(x[0, :, 0, 0], -torch.tensor(MEAN) / torch.tensor(STD))
    assert torch.allclose(x[1, :, 5, 5], (1 - torch.tensor(MEAN)) / torch.tensor(STD))


def test_random_crop_flip():
    x = torch.randn(16, 3, 32, 32)
    a = random_crop_flip(x, torch.Generator().manual_seed(7))
    b = random_crop_flip(x, torch.Generator().manual_seed(7))
    c = random_crop_flip(x, torch.Generator().manual_seed(8))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    flips = 0
    for i in range(16):  # every output is a 32x32 window of the 4-padded input, maybe mirrored
        windows = [
            (flip, padded[i, :, dy : dy + 32, dx : dx + 32])
            for dy in range(9)
            for dx in range(9)
            for flip in (False, True)
        ]
        found = [flip for flip, w in windows if torch.equal(a[i], w.flip(2) if flip else w)]
        assert found, f"sample {i} is not a padded crop"
        flips += found[0]
    assert 0 < flips < 16


def test_a_class_folder_name_with_a_line_break_is_refused(tmp_path):
    """labels.txt holds one class per line: a name with a line break would shift every label after it."""
    from cosinegate.data.imagefolder import load_imagefolder
    from cosinegate.errors import CosineGateError

    write_image_tree(tmp_path / "d", classes=("cat\ndog", "frog"), train_per_class=1, test_per_class=1)
    with pytest.raises(CosineGateError, match="control character .*rename the folder"):
        load_imagefolder(tmp_path / "d")


def test_imagefolder_cache_names_the_rule_applied_and_is_compressed(image_tree, tmp_path, monkeypatch):
    from cosinegate.data import resize

    cache = tmp_path / "cache"
    monkeypatch.setenv("COSINEGATE_CACHE", str(cache))
    root, _ = image_tree  # every image 32 x 32: taken natively, whatever rule was asked for
    train, test = imagefolder.load_imagefolder(root)
    files = sorted(cache.glob("imagefolder-*.npz"))
    assert len(files) == 2 and all(f.name.endswith("-32-native.npz") for f in files), [f.name for f in files]
    with np.load(files[0], allow_pickle=False) as data:
        assert sorted(data.files) == ["found_sizes", "images"]  # random pixels do not compress: kept plain, read back fastest
    smooth = np.broadcast_to(np.arange(64, dtype=np.uint8)[None, None, :, None], (50, 64, 64, 3)).copy()
    with open(tmp_path / "smooth.npz", "wb") as handle:
        imagefolder.write_cache(handle, smooth)
    with np.load(tmp_path / "smooth.npz", allow_pickle=False) as data:
        assert sorted(data.files) == ["deflated", "found_sizes", "shape"]  # a gradient compresses: stored compressed
    assert (tmp_path / "smooth.npz").stat().st_size < smooth.nbytes / 20
    assert np.array_equal(imagefolder.read_cache(tmp_path / "smooth.npz", 50, {64})[0], smooth)  # lossless
    assert imagefolder.read_cache(tmp_path / "smooth.npz", 50, {32}) is None  # another size: decoded again

    # a cache of the older layout (plain pixels, named after the rule asked for) is still read, not decoded again
    for f, split in zip(files, (test, train) if "-test-" in files[0].name else (train, test)):
        np.savez(f.with_name(f.name.replace("32-native", resize.rule_key(32, "eval"))), images=split.images)
        f.unlink()

    def no_decode(*args):
        raise AssertionError("decoded again although cached")

    monkeypatch.setattr(imagefolder, "_decode_all", no_decode)
    train2, test2 = imagefolder.load_imagefolder(root)
    assert np.array_equal(train2.images, train.images) and np.array_equal(test2.images, test.images)


def test_a_data_root_that_is_a_file_or_missing_says_which(tmp_path):
    """A new user's finding: a file passed as --data-root was reported as missing."""
    (tmp_path / "README.md").write_text("not a folder")
    with pytest.raises(CosineGateError, match="README.md is a file, not a folder; pass --data-root"):
        imagefolder.load_imagefolder(tmp_path / "README.md")
    with pytest.raises(CosineGateError, match="nowhere does not exist; pass --data-root"):
        imagefolder.load_imagefolder(tmp_path / "nowhere")
