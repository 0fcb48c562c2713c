"""The calibration set: a deterministic, seeded, class-stratified sample of the TRAINING split.

The same (source, root, count, seed) always gives the same images in the same
order (sorted by dataset index), so the set can be rebuilt from a manifest: its
image ids are recorded there together with `ids_sha256`.
"""

import hashlib
from dataclasses import dataclass

import numpy as np

from cosinegate.data import load_dataset
from cosinegate.data.imageset import balanced_indices
from cosinegate.data.normalization import CIFAR10
from cosinegate.errors import CosineGateError

DEFAULT_COUNT = 512
DEFAULT_SEED = 0


@dataclass
class CalibrationSet:
    images: np.ndarray  # [N, S, S, 3] uint8, S = the model's image size
    labels: np.ndarray
    ids: list
    source: str
    root: object
    seed: int

    def __len__(self):
        return len(self.ids)

    @property
    def ids_sha256(self):
        return ids_sha256(self.ids)


def ids_sha256(ids):
    """sha256 of the ids joined by newlines (order matters: it is the set's order)."""
    return hashlib.sha256("\n".join(ids).encode("utf-8")).hexdigest()


def check_image_array(images, what="calibration data", size=None):
    """Refuse anything but uint8 [N, S, S, 3] (S = `size` when given)."""
    images = np.asarray(images)
    shape = tuple(images.shape)
    square = images.ndim == 4 and shape[3] == 3 and shape[1] == shape[2] and (size is None or shape[1] == size)
    if not square or images.dtype != np.uint8:
        want = f"{size}x{size}" if size else "square"
        raise CosineGateError(
            f"{what}: expected uint8 {want} RGB images [N, S, S, 3], got {images.dtype} {shape}; "
            "load the data at the checkpoint's size (the stages do this from the checkpoint)."
        )
    return images


def select(train, count=DEFAULT_COUNT, seed=DEFAULT_SEED, source="custom", root=None):
    """Class-stratified `count` images of an ImageSet (the training split)."""
    check_image_array(train.images, f"{source} train split")
    num_classes = len(train.classes)
    count = int(count)
    if count < num_classes:
        raise CosineGateError(
            f"--calib-images {count} is fewer than the {num_classes} classes, so the calibration set cannot hold "
            f"every class; use at least {num_classes} (default {DEFAULT_COUNT})."
        )
    present = len(np.unique(train.labels))
    if present < num_classes:
        raise CosineGateError(
            f"the {source} train split has images of only {present} of its {num_classes} classes; "
            "calibrate on a split that covers every class."
        )
    indices = balanced_indices(train.labels, count, int(seed), num_classes)
    return CalibrationSet(train.images[indices], train.labels[indices], [train.ids[i] for i in indices], source, root, int(seed))


def load_calibration_set(source, root=None, count=DEFAULT_COUNT, seed=DEFAULT_SEED, image_size=32):
    """The calibration set of a data source's training split, at `image_size` (sized like evaluation images)."""
    train, _ = load_dataset(source, root, allow_download=False, image_size=image_size)
    return select(train, count, seed, source, None if root is None else str(root))


def to_input(images, normalization=None):
    """uint8 NHWC -> float32 NCHW, normalized like training (a model's `normalization`; default CIFAR-10's).

    In numpy, the float32 operations of cosinegate.data.augment.to_tensor in the same order (bit-identical), so the
    device calibrates (calibration/data_loader.py) without torch."""
    norm = normalization or CIFAR10
    mean, std = (np.asarray(norm[key], np.float32).reshape(1, 3, 1, 1) for key in ("mean", "std"))
    x = np.asarray(images).transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255.0)
    return np.ascontiguousarray((x - mean) / std, dtype=np.float32)


def batches(images, batch_size, normalization=None):
    """Consecutive float32 NCHW batches of at most `batch_size` images (the last may be smaller)."""
    if int(batch_size) < 1:
        raise CosineGateError(f"--batch-size must be at least 1, got {batch_size}.")
    for start in range(0, len(images), int(batch_size)):
        yield to_input(images[start : start + int(batch_size)], normalization)
