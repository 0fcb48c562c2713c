"""ImageSet: uint8 images in memory with labels and stable ids, plus class-balanced subsets."""

from dataclasses import dataclass

import numpy as np

from cosinegate.data.resize import center_crop, resized_side
from cosinegate.errors import CosineGateError


@dataclass
class ImageSet:
    images: np.ndarray  # [N, S, S, 3] uint8
    labels: np.ndarray  # [N] int64
    ids: list  # stable per-image ids, e.g. "test/cat/0001.jpg" or "synthetic/train/17"
    classes: list
    found_sizes: str = ""  # an image folder's sizes (resize.describe_sizes) when they were resized; "" as they are
    rule: str = "native"  # the resize rule applied to the whole split (resize.split_rule): native, eval or train

    def __len__(self):
        return len(self.labels)

    def cropped(self, size):
        """The same images center-cropped to size x size (a training split stored larger, evaluated)."""
        return ImageSet(np.ascontiguousarray(center_crop(self.images, size)), self.labels, self.ids, self.classes,
                        self.found_sizes, self.rule)

    def take(self, indices):
        indices = np.asarray(indices, dtype=np.int64)
        return ImageSet(self.images[indices], self.labels[indices], [self.ids[i] for i in indices], self.classes,
                        self.found_sizes, self.rule)


def balanced_indices(labels, count, seed, num_classes):
    """Deterministic class-stratified sample of `count` indices (round-robin over classes)."""
    if count > len(labels):
        raise CosineGateError(f"asked for {count} images but the split has only {len(labels)}; use a smaller number.")
    rng = np.random.default_rng(seed)
    per_class = [rng.permutation(np.flatnonzero(labels == c)) for c in range(num_classes)]
    chosen, depth = [], 0
    while len(chosen) < count:
        for members in per_class:
            if depth < len(members) and len(chosen) < count:
                chosen.append(members[depth])
        depth += 1
    return np.sort(np.asarray(chosen, dtype=np.int64))


def balanced_subset(images, count, seed=0):
    return images.take(balanced_indices(images.labels, count, seed, len(images.classes)))


def split_holdout(images, fraction, seed=0):
    """Split a training set into (train, held-out) class-stratified parts."""
    if not 0.0 < fraction < 1.0:
        return images, None
    held = balanced_indices(images.labels, max(len(images.classes), int(round(len(images) * fraction))), seed + 1, len(images.classes))
    keep = np.setdiff1d(np.arange(len(images)), held)
    return images.take(keep), images.take(held)


def check_images(images, source, size=32, training=False):
    """Refuse data of the wrong shape with a message naming what was found.

    Expected: uint8 [N, size, size, 3]; a training split may be stored at the `train`
    rule's larger size (random crops of `size` are taken from it).
    """
    sides = {size, resized_side(size)} if training else {size}
    shape = tuple(images.images.shape)
    if images.images.ndim != 4 or shape[3:] != (3,) or shape[1] != shape[2] or shape[1] not in sides or images.images.dtype != np.uint8:
        raise CosineGateError(
            f"{source}: expected uint8 {size}x{size} RGB images ([N, {size}, {size}, 3]), got {images.images.dtype} {shape}; "
            f"load the data with image_size={size} (--image-size {size})."
        )
    if len(images) == 0:
        raise CosineGateError(f"{source}: no images found.")
