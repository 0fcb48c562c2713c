"""ROOT/{train,test}/<class>/*.{jpg,jpeg,png,...}: decoded once per size with Pillow, cached as uint8 arrays.

Images of any size, aspect and colour mode: converted to RGB (grayscale, palette,
CMYK, RGBA), EXIF orientation applied, then sized by the rules of
`cosinegate.data.resize`. The cache lives in the user cache directory
($COSINEGATE_CACHE, else $XDG_CACHE_HOME/cosinegate, else ~/.cache/cosinegate),
since data folders may be read-only. Its key hashes the file list with sizes and
modification times, the image size and the resize rule asked for (train or eval;
a split whose images are all N x N is stored as it is under either), so a changed
folder or another size is decoded again.
"""

import hashlib
import os
from pathlib import Path

import numpy as np

from cosinegate.artifacts import atomic_path
from cosinegate.data import resize
from cosinegate.data.imageset import ImageSet
from cosinegate.errors import CosineGateError

EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
MAX_NAMED = 5  # unreadable files named in the error message


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
    from cosinegate.graphmeta import class_name_problem

    bad = next((c for c in classes if class_name_problem(c)), None)
    if bad is not None:
        raise CosineGateError(f"class folder {folder / bad!r} under {folder}: {class_name_problem(bad)}; rename the folder.")
    files = [(c, sorted(f for f in (folder / c).iterdir() if f.suffix.lower() in EXTENSIONS)) for c in classes]
    if not classes or not any(f for _, f in files):
        raise CosineGateError(f"no images under {folder}; expected {folder}/<class>/*.jpg or *.png.")
    return classes, files


def _open_rgb(path):
    """The image at `path` as an upright RGB Pillow image (EXIF orientation applied)."""
    from PIL import Image, ImageOps

    with Image.open(path) as image:
        image = ImageOps.exif_transpose(image)
        return image.convert("RGB")


def _shape(path):
    """(width, height) as displayed, read from the header only; None when unreadable."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            w, h = image.size
            orientation = image.getexif().get(0x0112, 1)
            return (h, w) if orientation in (5, 6, 7, 8) else (w, h)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError):
        return None


def _unreadable(paths, split):
    named = ", ".join(str(p) for p in paths[:MAX_NAMED])
    more = f" and {len(paths) - MAX_NAMED} more" if len(paths) > MAX_NAMED else ""
    return CosineGateError(f"{len(paths)} unreadable image(s) in {split}/: {named}{more}; remove or replace them.")


def _decode_all(paths, size, rule, split):
    from PIL import UnidentifiedImageError
    from tqdm import tqdm

    arrays, bad = [], []
    for path in tqdm(paths, desc=f"decode {split} at {size}x{size}", unit="img", leave=False):
        try:
            arrays.append(resize.fit(_open_rgb(path), size, rule))
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError):
            bad.append(path)
    if bad:
        raise _unreadable(bad, split)
    return np.stack(arrays)


def _load_split(root, split, classes, files, size, training):
    paths = [(label, path) for label, (_, group) in enumerate(files) for path in group]
    key, missing = hashlib.sha256(), []
    for _, path in paths:
        try:
            stat = path.stat()
        except OSError:  # e.g. a broken symlink
            missing.append(path)
            continue
        key.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    if missing:
        raise _unreadable(missing, split)
    ids = [f"{split}/{path.parent.name}/{path.name}" for _, path in paths]
    labels = np.asarray([label for label, _ in paths], dtype=np.int64)
    wanted = "train" if training else "eval"
    cached = cache_dir() / f"imagefolder-{split}-{key.hexdigest()[:20]}-{resize.rule_key(size, wanted)}.npz"
    if cached.is_file():
        with np.load(cached) as data:
            return ImageSet(data["images"], labels, ids, classes)
    shapes = [_shape(p) for _, p in paths]
    bad = [p for (_, p), s in zip(paths, shapes) if s is None]
    if bad:
        raise _unreadable(bad, split)
    images = _decode_all([p for _, p in paths], size, resize.split_rule(shapes, size, training), split)
    with atomic_path(cached) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, images=images)
    return ImageSet(images, labels, ids, classes)


def load_imagefolder(root, image_size=32, training=False):
    """Return (train, test) ImageSets at `image_size`; train and test must have the same class folders.

    training=True stores the train split for random crops (resize rule `train`); else both use `eval`.
    """
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
    return (_load_split(root, "train", train_classes, train_files, image_size, training),
            _load_split(root, "test", test_classes, test_files, image_size, False))
