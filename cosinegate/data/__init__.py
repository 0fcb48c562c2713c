"""Data sources (synthetic, cifar10, imagefolder), subsets and augmentation."""

import functools

from cosinegate.data.imageset import ImageSet, balanced_subset, check_images, split_holdout
from cosinegate.errors import CosineGateError

SOURCES = ("synthetic", "cifar10", "imagefolder")


@functools.lru_cache(maxsize=4)
def _load(source, root, allow_download):
    if source == "synthetic":
        from cosinegate.data.synthetic import load_synthetic

        return load_synthetic()
    if root is None:
        raise CosineGateError(f"--data {source} needs --data-root PATH.")
    if source == "cifar10":
        from cosinegate.data.cifar10 import load_cifar10

        return load_cifar10(root, allow_download)
    from cosinegate.data.imagefolder import load_imagefolder

    return load_imagefolder(root)


def load_dataset(source, root=None, allow_download=True):
    """Return (train, test) ImageSets of a source."""
    if source not in SOURCES:
        raise CosineGateError(f"unknown data source {source!r}; choose one of {', '.join(SOURCES)}.")
    train, test = _load(source, None if root is None else str(root), allow_download)
    for split, images in (("train", train), ("test", test)):
        check_images(images, f"{source} {split}")
    return train, test


__all__ = ["ImageSet", "SOURCES", "balanced_subset", "load_dataset", "split_holdout"]
