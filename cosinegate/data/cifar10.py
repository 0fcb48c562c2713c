"""CIFAR-10 from the standard python-pickle batches, downloaded with checksum when missing."""

import hashlib
import pickle
import tarfile
import urllib.request
from pathlib import Path

import numpy as np

from cosinegate.data.imageset import ImageSet
from cosinegate.errors import CosineGateError

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
MD5 = "c58f30108f718f92721af3b95e74349a"
FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]


def _batch_dir(root):
    root = Path(root)
    return root if (root / "batches.meta").is_file() else root / FOLDER


def download(root):
    """Download and unpack the archive into root, verifying its MD5."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    archive = root / "cifar-10-python.tar.gz"
    partial = archive.with_suffix(".part")
    try:
        urllib.request.urlretrieve(URL, partial)
    except OSError as exc:
        raise CosineGateError(
            f"CIFAR-10 is not under {root} and could not be downloaded ({exc}). "
            "Put the python batches there, or use --data imagefolder / --data synthetic."
        ) from exc
    digest = hashlib.md5(partial.read_bytes()).hexdigest()
    if digest != MD5:
        partial.unlink()
        raise CosineGateError(f"downloaded CIFAR-10 archive has MD5 {digest}, expected {MD5}; try again.")
    partial.rename(archive)
    with tarfile.open(archive) as tar:
        tar.extractall(root, filter="data")


def _read_batch(path):
    try:
        with open(path, "rb") as handle:
            entry = pickle.load(handle, encoding="bytes")
    except (OSError, pickle.UnpicklingError, EOFError) as exc:
        raise CosineGateError(f"cannot read CIFAR-10 batch {path} ({exc}); delete it and download again.") from exc
    images = np.asarray(entry[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), np.asarray(entry[b"labels"], dtype=np.int64)


def load_cifar10(root, allow_download=True):
    """Return (train, test) ImageSets from the pickle batches under root."""
    folder = _batch_dir(root)
    if not (folder / "test_batch").is_file():
        if not allow_download:
            raise CosineGateError(f"no CIFAR-10 python batches under {root} (expected {FOLDER}/test_batch); pass the right --data-root.")
        download(root)
        folder = _batch_dir(root)
    with open(folder / "batches.meta", "rb") as handle:
        classes = [c.decode() for c in pickle.load(handle, encoding="bytes")[b"label_names"]]
    parts = [_read_batch(folder / name) for name in TRAIN_BATCHES]
    train_images = np.concatenate([p[0] for p in parts])
    train_labels = np.concatenate([p[1] for p in parts])
    test_images, test_labels = _read_batch(folder / "test_batch")
    return (
        ImageSet(train_images, train_labels, [f"cifar10/train/{i}" for i in range(len(train_labels))], classes),
        ImageSet(test_images, test_labels, [f"cifar10/test/{i}" for i in range(len(test_labels))], classes),
    )
