"""CIFAR-10 from the standard python-pickle batches, downloaded with checksum when missing.

The batches are pickles by design. They are read with an unpickler that builds nothing but
numpy arrays, lists, dicts, bytes and numbers (a foreign object is refused, not built), and,
when the official archive lies beside them, every batch must have the official MD5. Only the
official archive (MD5 below) is a trustworthy source of these files.
"""

import pickle
import urllib.request
from pathlib import Path

import numpy as np

from cosinegate.archives import extract
from cosinegate.artifacts import file_digest, is_readable_file
from cosinegate.data.imageset import ImageSet
from cosinegate.data.resize import fit_arrays, split_rule
from cosinegate.errors import CosineGateError

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
MD5 = "c58f30108f718f92721af3b95e74349a"
FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
BATCH_MD5 = {  # of the files in the official archive (as published with it)
    "data_batch_1": "c99cafc152244af753f735de768cd75f", "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751", "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb", "test_batch": "40351d587109b95175f43aff81a1287e",
    "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
}
SAFE_SOURCE = f"only the official archive {URL} (MD5 {MD5}) is a safe source of CIFAR-10 batches"


class _DataUnpickler(pickle.Unpickler):
    """Builds numpy arrays and plain containers only; any other global is refused before it is called."""

    def find_class(self, module, name):
        try:
            import numpy._core.multiarray as multiarray  # numpy 2
        except ImportError:  # numpy 1: JetPack 5.1's Python 3.8 tops out at numpy 1.24
            import numpy.core.multiarray as multiarray

        allowed = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
        for prefix in ("numpy.core.multiarray", "numpy._core.multiarray"):  # written by numpy 1 / numpy 2
            allowed[(prefix, "_reconstruct")] = multiarray._reconstruct
            allowed[(prefix, "scalar")] = multiarray.scalar
        allowed[("_codecs", "encode")] = _latin1_bytes  # how Python 3 pickles bytes at protocol 2
        if (module, name) not in allowed:
            raise pickle.UnpicklingError(f"it holds a pickled {module}.{name}, refused unbuilt")
        return allowed[(module, name)]


def _latin1_bytes(text, encoding):
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"it encodes bytes as {encoding!r}, refused")
    return text.encode("latin-1")


def _unpickle(path):
    with open(path, "rb") as handle:
        return _DataUnpickler(handle, encoding="bytes").load()


def _md5(path):
    return file_digest(path, "md5")


def check_official(folder):
    """With the official archive beside the batches (as download() leaves it), every batch must match its MD5."""
    archives = [p / "cifar-10-python.tar.gz" for p in (folder, folder.parent)]
    archive = next((a for a in archives if a.is_file()), None)
    if archive is None:
        return False
    if _md5(archive) != MD5:
        raise CosineGateError(f"{archive} is not the official CIFAR-10 archive (MD5 differs); {SAFE_SOURCE}: delete it and download again.")
    for name, digest in BATCH_MD5.items():
        if (folder / name).is_file() and _md5(folder / name) != digest:
            raise CosineGateError(f"{folder / name} differs from the official archive beside it (MD5); delete {folder} "
                                  f"and unpack {archive.name} again ({SAFE_SOURCE}).")
    return True


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
    digest = _md5(partial)
    if digest != MD5:
        partial.unlink()
        raise CosineGateError(f"downloaded CIFAR-10 archive has MD5 {digest}, expected {MD5}; try again.")
    partial.rename(archive)
    extract(archive, root, f"delete {archive} and download again.")


def _read_batch(path):
    try:
        entry = _unpickle(path)
        images = np.asarray(entry[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        labels = np.asarray(entry[b"labels"], dtype=np.int64)
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError) as exc:
        raise CosineGateError(f"cannot read CIFAR-10 batch {path} ({exc}); {SAFE_SOURCE}: delete it and download again.") from exc
    if len(images) != len(labels) or (len(labels) and (labels.min() < 0 or labels.max() > 9)):
        raise CosineGateError(f"CIFAR-10 batch {path} has {len(images)} images but {len(labels)} labels in 0..9; {SAFE_SOURCE}.")
    return np.ascontiguousarray(images), labels


def load_cifar10(root, allow_download=True, image_size=32, training=False):
    """Return (train, test) ImageSets from the pickle batches under root, resized to `image_size`
    by the rules of cosinegate.data.resize (32 = as stored)."""
    folder = _batch_dir(root)
    if not (folder / "test_batch").is_file():
        if not allow_download:
            raise CosineGateError(f"no CIFAR-10 python batches under {root} (expected {FOLDER}/test_batch) and nothing is "
                                  "downloaded here; pass the right --data-root (cosinegate train --data cifar10 --data-root DIR downloads it).")
        download(root)
        folder = _batch_dir(root)
    odd = [name for name in ("batches.meta", *TRAIN_BATCHES, "test_batch") if not is_readable_file(folder / name)]
    if odd:
        raise CosineGateError(f"{folder / odd[0]} is missing or not a regular file (a FIFO, device or looping link is not "
                              f"read); {SAFE_SOURCE}: put the official batches there.")
    check_official(folder)
    try:
        classes = [c.decode() for c in _unpickle(folder / "batches.meta")[b"label_names"]]
    except (OSError, pickle.UnpicklingError, EOFError, TypeError, KeyError, AttributeError, UnicodeDecodeError) as exc:
        raise CosineGateError(f"cannot read {folder / 'batches.meta'} ({exc}); {SAFE_SOURCE}.") from exc
    parts = [_read_batch(folder / name) for name in TRAIN_BATCHES]
    train_images = np.concatenate([p[0] for p in parts])
    train_labels = np.concatenate([p[1] for p in parts])
    test_images, test_labels = _read_batch(folder / "test_batch")
    train_images = fit_arrays(train_images, image_size, split_rule([(32, 32)], image_size, training))
    test_images = fit_arrays(test_images, image_size, split_rule([(32, 32)], image_size, False))
    return (
        ImageSet(train_images, train_labels, [f"cifar10/train/{i}" for i in range(len(train_labels))], classes),
        ImageSet(test_images, test_labels, [f"cifar10/test/{i}" for i in range(len(test_labels))], classes),
    )
