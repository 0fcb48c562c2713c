"""ROOT/{train,test}/<class>/*.{jpg,jpeg,png}: decoded once with Pillow, cached as uint8 arrays.

The cache lives in the user cache directory ($COSINEGATE_CACHE, else
$XDG_CACHE_HOME/cosinegate, else ~/.cache/cosinegate), since data folders may be
read-only. Its key hashes the file list with sizes and modification times, so a
changed folder is decoded again.
"""

import hashlib
import os
from pathlib import Path

import numpy as np

from cosinegate.artifacts import atomic_path
from cosinegate.data.imageset import ImageSet
from cosinegate.errors import CosineGateError

EXTENSIONS = {".jpg", ".jpeg", ".png"}


def cache_dir():
    if os.environ.get("COSINEGATE_CACHE"):
        return Path(os.environ["COSINEGATE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cosinegate"


def _list_split(root, split):
    folder = Path(root) / split
    if not folder.is_dir():
        raise CosineGateError(
            f"{root} has no {split}/ folder; an image folder needs ROOT/train/<class>/*.jpg and ROOT/test/<class>/*.jpg."
        )
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    files = [(c, sorted(f for f in (folder / c).iterdir() if f.suffix.lower() in EXTENSIONS)) for c in classes]
    if not classes or not any(f for _, f in files):
        raise CosineGateError(f"no images under {folder}; expected {folder}/<class>/*.jpg or *.png.")
    return classes, files


def _decode(path):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            if image.size != (32, 32):
                raise CosineGateError(f"{path} is {image.size[0]}x{image.size[1]}; this toolkit expects 32x32 images.")
            return np.asarray(image, dtype=np.uint8)
    except (OSError, UnidentifiedImageError) as exc:
        raise CosineGateError(f"cannot decode {path} ({exc}); remove or replace the file.") from exc


def _load_split(root, split, classes, files):
    paths = [(label, path) for label, (_, group) in enumerate(files) for path in group]
    key = hashlib.sha256()
    for _, path in paths:
        stat = path.stat()
        key.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    cached = cache_dir() / f"imagefolder-{split}-{key.hexdigest()[:20]}.npz"
    ids = [f"{split}/{path.parent.name}/{path.name}" for _, path in paths]
    labels = np.asarray([label for label, _ in paths], dtype=np.int64)
    if cached.is_file():
        with np.load(cached) as data:
            return ImageSet(data["images"], labels, ids, classes)
    from tqdm import tqdm

    images = np.stack([_decode(p) for _, p in tqdm(paths, desc=f"decode {split}", unit="img", leave=False)])
    with atomic_path(cached) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, images=images)
    return ImageSet(images, labels, ids, classes)


def load_imagefolder(root):
    """Return (train, test) ImageSets; train and test must have the same class folders."""
    if not Path(root).is_dir():
        raise CosineGateError(f"data root {root} does not exist; pass --data-root pointing at ROOT/{{train,test}}/<class>/.")
    train_classes, train_files = _list_split(root, "train")
    test_classes, test_files = _list_split(root, "test")
    if train_classes != test_classes:
        only_train = sorted(set(train_classes) - set(test_classes))
        only_test = sorted(set(test_classes) - set(train_classes))
        raise CosineGateError(
            f"class folders differ between {root}/train and {root}/test (only in train: {only_train}, only in test: {only_test}); "
            "make both splits hold the same class folders."
        )
    return _load_split(root, "train", train_classes, train_files), _load_split(root, "test", test_classes, test_files)
