"""Data sources (synthetic, cifar10, imagefolder), subsets and augmentation."""

import functools

from cosinegate.data.imageset import ImageSet, balanced_subset, check_images, split_holdout
from cosinegate.errors import CosineGateError

SOURCES = ("synthetic", "cifar10", "imagefolder")


@functools.lru_cache(maxsize=4)
def _load(source, root, allow_download, image_size, training):
    if source == "synthetic":
        from cosinegate.data.synthetic import load_synthetic

        return load_synthetic(image_size=image_size)
    if root is None:
        raise CosineGateError(f"--data {source} needs --data-root PATH.")
    if source == "cifar10":
        from cosinegate.data.cifar10 import load_cifar10

        return load_cifar10(root, allow_download, image_size, training)
    from cosinegate.data.imagefolder import load_imagefolder

    return load_imagefolder(root, image_size, training)


def load_dataset(source, root=None, allow_download=True, image_size=32, training=False):
    """Return (train, test) ImageSets of a source at `image_size` x `image_size`.

    training=True keeps the train split a little larger than `image_size` where images
    are resized (resize rule `train`), for random crops; otherwise both splits are
    `image_size` x `image_size` (rule `eval`, or `native` where they already are).
    """
    if source not in SOURCES:
        raise CosineGateError(f"unknown data source {source!r}; choose one of {', '.join(SOURCES)}.")
    train, test = _load(source, None if root is None else str(root), allow_download, int(image_size), bool(training))
    check_images(train, f"{source} train", image_size, training)
    check_images(test, f"{source} test", image_size)
    return train, test


__all__ = ["ImageSet", "SOURCES", "balanced_subset", "load_dataset", "split_holdout"]
