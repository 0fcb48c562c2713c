"""ROOT/{train,test}/<class>/*.{jpg,jpeg,png,...}: decoded once per size with Pillow, cached as uint8 arrays.

Images of any size, aspect and colour mode: converted to RGB (grayscale, palette,
CMYK, RGBA), EXIF orientation applied, then sized by the rules of
`cosinegate.data.resize`. The cache lives in the user cache directory
($COSINEGATE_CACHE, else $XDG_CACHE_HOME/cosinegate, else ~/.cache/cosinegate),
since data folders may be read-only. Its key hashes the file list with sizes and
modification times, the image size and the resize rule applied (train or eval, or
native: a split whose images are all N x N is stored as it is), so a changed folder
or another size is decoded again. The pixels are stored as uint8 arrays, losslessly
compressed where that at least halves the file (``write_cache``: flat, synthetic or
upscaled pictures; natural photos would shrink by a quarter only, at six times the
read time); a cache of the older layout under the same name is still read.

Decoded faithfully or refused, never guessed: 16-bit grayscale is scaled to 8 bits (not
clipped), 32-bit integer or float images are refused, an image over MAX_PIXELS is refused
from its header (a decompression bomb), anything but a regular file (a FIFO, a device, a
link that loops) is refused unread, and a class with no image in one split is refused.
Names are shown escaped, so an error stays on one line.
"""

import hashlib
import os
import zlib
from pathlib import Path

import numpy as np

from cosinegate.artifacts import atomic_path, is_readable_file
from cosinegate.data import resize
from cosinegate.data.imageset import ImageSet
from cosinegate.errors import CosineGateError
from cosinegate.graphmeta import class_name_problem

EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
MAX_NAMED = 5  # unreadable files named in the error message
MAX_PIXELS = 50_000_000  # width x height read from the header; a 7000 x 7000 photo passes, a 30000 x 30000 bomb does not
SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")


def shown(path):
    """A path for a one-line message: control characters (a newline in a file name) escaped."""
    text = str(path)
    return text.encode("unicode_escape").decode("ascii") if any(ord(c) < 32 or ord(c) == 127 for c in text) else text


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
    entries = sorted(folder.iterdir())
    broken = [p for p in entries if p.is_symlink() and not _resolves(p)]
    if broken:
        raise CosineGateError(f"{shown(broken[0])} is a symbolic link that loops or points nowhere; a class folder must be a "
                              "folder: remove or fix the link.")
    classes = sorted(p.name for p in entries if p.is_dir())

    bad = next((c for c in classes if class_name_problem(c)), None)
    if bad is not None:
        raise CosineGateError(f"class folder {folder / bad!r} under {folder}: {class_name_problem(bad)}; rename the folder.")
    files = [(c, sorted(f for f in (folder / c).iterdir() if f.suffix.lower() in EXTENSIONS)) for c in classes]
    if not classes or not any(f for _, f in files):
        raise CosineGateError(f"no images under {shown(folder)}; expected {shown(folder)}/<class>/*.jpg or *.png.")
    odd = [f for _, group in files for f in group if not is_readable_file(f)]
    if odd:
        raise CosineGateError(f"{shown(odd[0])}{f' and {len(odd) - 1} more' if len(odd) > 1 else ''} is not a regular file "
                              "(a FIFO, device, or a link that loops or points nowhere) and is not read; remove it.")
    empty = [c for c, group in files if not group]
    if empty:
        raise CosineGateError(f"class {shown(empty[0])} has no image in {shown(folder)}"
                              f"{f' (nor {len(empty) - 1} other classes)' if len(empty) > 1 else ''}; a model cannot learn or "
                              "be scored on it: add images or remove the class folder from both splits.")
    return classes, files


def _resolves(path):
    try:
        path.stat()
        return True
    except OSError:
        return False


def _open_rgb(path):
    """The image at `path` as an upright RGB Pillow image (EXIF orientation applied)."""
    from PIL import Image, ImageOps

    with Image.open(path) as image:
        _check_pixels(image, path)
        image = ImageOps.exif_transpose(image)
        if image.mode in SIXTEEN_BIT:  # convert("RGB") would clip 0..65535 to 255: scale to 8 bits instead
            values = np.asarray(image, dtype=np.uint16)
            image = Image.fromarray((values >> 8).astype(np.uint8), "L")
        elif image.mode in ("I", "F"):
            raise ValueError(f"{image.mode} mode (32-bit) images are not read; save it as 8- or 16-bit")
        return image.convert("RGB")


def _check_pixels(image, path):
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise CosineGateError(f"image {shown(path)} is {width} x {height} pixels, over the {MAX_PIXELS:,} pixel limit "
                              "(a decompression bomb, or a photo to shrink first); resize or remove it.")


def _shape(path):
    """(width, height) as displayed, read from the header only; None when unreadable."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            _check_pixels(image, path)
            w, h = image.size
            orientation = image.getexif().get(0x0112, 1)
            return (h, w) if orientation in (5, 6, 7, 8) else (w, h)
    except Image.DecompressionBombError:  # Pillow's own limit, above ours: refused from the header all the same
        raise CosineGateError(f"image {shown(path)} is over the {MAX_PIXELS:,} pixel limit (a decompression bomb, or a "
                              "photo to shrink first); resize or remove it.") from None
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError):
        return None


def _unreadable(paths, split):
    named = ", ".join(shown(p) for p in paths[:MAX_NAMED])
    more = f" and {len(paths) - MAX_NAMED} more" if len(paths) > MAX_NAMED else ""
    return CosineGateError(f"{len(paths)} unreadable image(s) in {split}/: {named}{more}; remove or replace them.")


def _decode_all(paths, size, rule, split):
    from PIL import Image, UnidentifiedImageError

    from cosinegate.progress import make_bar

    arrays, bad = [], []
    for path in make_bar(paths, desc=f"decode {split} at {size}x{size}", unit="img"):  # on a terminal only
        try:
            arrays.append(resize.fit(_open_rgb(path), size, rule))
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError):
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

    def cache_file(rule):
        return cache_dir() / f"imagefolder-{split}-{key.hexdigest()[:20]}-{resize.rule_key(size, rule)}.npz"

    for rule in ("native", wanted):  # the name says the rule applied: native when every image was N x N already
        cached = read_cache(cache_file(rule), len(paths), {size, resize.stored_size(size, rule)})
        if cached is not None:
            return ImageSet(cached[0], labels, ids, classes, cached[1], rule)
    shapes = [_shape(p) for _, p in paths]
    bad = [p for (_, p), s in zip(paths, shapes) if s is None]
    if bad:
        raise _unreadable(bad, split)
    rule = resize.split_rule(shapes, size, training)
    images = _decode_all([p for _, p in paths], size, rule, split)
    found = "" if rule == "native" else resize.describe_sizes(shapes)
    with atomic_path(cache_file(rule)) as tmp:
        with open(tmp, "wb") as handle:
            write_cache(handle, images, found)
    return ImageSet(images, labels, ids, classes, found, rule)


COMPRESS_BELOW = 0.5  # stored compressed only when that at least halves the file


def write_cache(file, images, found=""):
    """uint8 [N, s, s, 3] images, losslessly compressed where that at least halves them (each row as differences to
    its left neighbour, mod 256, deflated at level 1: flat, synthetic or upscaled pictures), else as they are.

    Natural photos shrink by only ~26% (CIFAR-10's test split: 30.7 -> 22.7 MB) while reading them back would take
    ~6x the CPU of the plain array (0.32 s instead of 0.05 s per 10,000 images at 32x32), so those stay plain."""
    delta = images.copy()
    delta[:, :, 1:] -= images[:, :, :-1]
    packed = zlib.compress(delta.tobytes(), 1)
    if len(packed) > COMPRESS_BELOW * images.nbytes:
        np.savez(file, images=images, found_sizes=np.array(found))
        return
    np.savez(file, shape=np.asarray(images.shape, dtype=np.int64), deflated=np.frombuffer(packed, dtype=np.uint8),
             found_sizes=np.array(found))


def read_cache(path, count, sides):
    """(images, found sizes) of a cache file (compressed, or the older plain ``images`` array; a cache written before
    sizes were kept says none), or None when it is missing or not what this split at this size must hold (then the
    split is decoded again and the file replaced)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            if "images" in data.files:
                images = data["images"]
            else:
                shape = tuple(int(v) for v in data["shape"])
                raw = zlib.decompress(data["deflated"].tobytes())
                images = np.cumsum(np.frombuffer(raw, dtype=np.uint8).reshape(shape), axis=2, dtype=np.uint8)
            found = str(data["found_sizes"]) if "found_sizes" in data.files else ""
    except (OSError, ValueError, KeyError, TypeError, zlib.error):  # damaged or foreign: decode again
        return None
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[0] != count or images.shape[1] not in sides \
            or images.shape[1:] != (images.shape[1], images.shape[1], 3):
        return None
    return images, found


def load_imagefolder(root, image_size=32, training=False):
    """Return (train, test) ImageSets at `image_size`; train and test must have the same class folders.

    training=True stores the train split for random crops (resize rule `train`); else both use `eval`.
    """
    if not Path(root).is_dir():
        what = "is a file, not a folder" if Path(root).exists() else "does not exist"
        raise CosineGateError(f"data root {root} {what}; pass --data-root pointing at ROOT/{{train,test}}/<class>/.")
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
