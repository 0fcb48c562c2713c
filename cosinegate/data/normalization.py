"""Per-channel input normalization: computed from the training split, named, or given.

A normalization is a dict {"mean": [r, g, b], "std": [r, g, b], "source": text} on the
0..1 pixel scale. Training resolves the config's request once and stores the numbers
in the checkpoint; every later stage (evaluation, export metadata, calibration,
parity, bench) uses the checkpoint's numbers.
"""

import math

import numpy as np

from cosinegate.errors import CosineGateError
from cosinegate.graphmeta import normalization_problem
from cosinegate.schema import shown

NAMED = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),  # torchvision's pretrained weights expect these
}
LEGACY_SOURCE = "cifar10 constants (checkpoint written before normalization was stored)"
FLAG_HELP = "auto (mean/std of the training split) | cifar10 | imagenet | R,G,B/R,G,B (mean/std on the 0..1 scale)"


def named(name, source=None):
    mean, std = NAMED[name]
    return {"mean": list(mean), "std": list(std), "source": source or name}


CIFAR10 = named("cifar10")


def check_normalization(value):
    """Refuse a config value that is not auto, a known name or [[3 means], [3 positive stds]]."""
    if isinstance(value, str) and (value == "auto" or value in NAMED):
        return value
    try:
        mean, std = ([float(v) for v in part] for part in value)
    except (TypeError, ValueError, OverflowError) as exc:  # OverflowError: an int too large for a float
        raise CosineGateError(f"data.normalization = {shown(value)}; use {FLAG_HELP}.") from exc
    if len(mean) != 3 or len(std) != 3 or not all(map(math.isfinite, mean + std)) or min(std) <= 0:
        raise CosineGateError(f"data.normalization = {shown(value)}: needs 3 finite means and 3 positive stds, e.g. "
                              "0.5,0.5,0.5/0.25,0.25,0.25.")
    return [mean, std]


def parse_flag(text):
    """--normalization text -> config value ('auto', a name, or [[means], [stds]])."""
    if text in ("auto", *NAMED):
        return text
    parts = text.split("/")
    if len(parts) != 2:
        raise CosineGateError(f"--normalization {text!r}: use {FLAG_HELP}.")
    try:
        return check_normalization([[float(v) for v in p.split(",")] for p in parts])
    except ValueError as exc:
        raise CosineGateError(f"--normalization {text!r}: use {FLAG_HELP}.") from exc


def channel_stats(images, chunk=512):
    """Per-channel (mean, std) of uint8 NHWC images on the 0..1 scale, accumulated in float64 by chunks."""
    total, square, count = np.zeros(3), np.zeros(3), 0
    for start in range(0, len(images), chunk):
        part = images[start : start + chunk].reshape(-1, 3).astype(np.float64) / 255.0
        total += part.sum(0)
        square += (part * part).sum(0)
        count += len(part)
    mean = total / count
    std = np.sqrt(np.maximum(square / count - mean * mean, 0.0))
    return mean, std


def resolve(value, train_images, pretrained=None):
    """The numbers of a config value; 'auto' measures the training images (uint8 NHWC), unless the
    run starts from weights trained with a named normalization (`pretrained`, e.g. imagenet)."""
    value = check_normalization(value)
    if isinstance(value, str) and value in NAMED:
        return named(value)
    if value == "auto" and pretrained in NAMED:
        return named(pretrained, f"{pretrained} (auto: the --init-from weights were trained with it)")
    if isinstance(value, str):  # auto
        mean, std = channel_stats(train_images)
        if min(std) <= 1e-6:
            raise CosineGateError("the training images have a constant colour channel (std 0); pass --normalization cifar10 or R,G,B/R,G,B.")
        return {"mean": [round(float(v), 6) for v in mean], "std": [round(float(v), 6) for v in std],
                "source": f"training split ({len(train_images)} images)"}
    return {"mean": list(value[0]), "std": list(value[1]), "source": "given"}


def of_checkpoint(state, path="the checkpoint"):
    """The normalization a checkpoint was trained with (CIFAR-10's constants for old checkpoints); stored
    numbers that are not 3 finite means and 3 finite positive stds are refused."""
    stored = state.get("normalization")
    if not stored:
        return named("cifar10", LEGACY_SOURCE)
    problem = normalization_problem(stored)
    if problem:
        raise CosineGateError(f"{path} stores no usable normalization (normalization {problem}); pass an unmodified file "
                              "written by cosinegate train.")
    mean, std = ([float(v) for v in stored[key]] for key in ("mean", "std"))
    return {**stored, "mean": mean, "std": std}
