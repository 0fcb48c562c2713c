"""The embedded default dataset: procedurally generated 32x32 shapes (scaled to other sizes), no files, no network.

Ten classes of shapes (disk, square, triangle, cross, ring, and the same five
outlined or striped variants alike are distinct classes) drawn with random
position, size, colours, background gradient, pixel noise and a clutter patch.
Each image has its own contrast, from faint to strong, so some images are easy
and some hard: the input-dependent difficulty that dynamic routing can exploit.
Deterministic from the seed.
"""

import numpy as np

from cosinegate.artifacts import atomic_path
from cosinegate.data.imagefolder import cache_dir
from cosinegate.data.imageset import ImageSet
from cosinegate.data.resize import scale_arrays

GENERATOR_VERSION = 1  # bump when generate() changes, so cached arrays are regenerated
CLASSES = ["disk", "square", "triangle", "cross", "ring", "hbars", "vbars", "diamond", "checker", "halfmoon"]


def _masks(kind, dx, dy, r, ang):
    """Boolean masks [n, 32, 32] for one shape kind; dx, dy relative coordinates, r radius."""
    c, s = np.cos(ang)[:, None, None], np.sin(ang)[:, None, None]
    u, v = c * dx + s * dy, -s * dx + c * dy
    rr = r[:, None, None]
    dist = np.sqrt(dx**2 + dy**2)
    if kind == "disk":
        return dist < rr
    if kind == "square":
        return (np.abs(u) < rr * 0.85) & (np.abs(v) < rr * 0.85)
    if kind == "triangle":
        return (v < rr * 0.6) & (v > -rr + 1.7 * np.abs(u))
    if kind == "cross":
        return ((np.abs(u) < rr * 0.3) | (np.abs(v) < rr * 0.3)) & (np.maximum(np.abs(u), np.abs(v)) < rr)
    if kind == "ring":
        return (dist < rr) & (dist > rr * 0.55)
    if kind == "hbars":
        return (np.abs(u) < rr) & (np.abs(v) < rr) & (np.floor((v + rr) / (rr * 0.4)) % 2 == 0)
    if kind == "vbars":
        return (np.abs(u) < rr) & (np.abs(v) < rr) & (np.floor((u + rr) / (rr * 0.4)) % 2 == 0)
    if kind == "diamond":
        return np.abs(u) + np.abs(v) < rr
    if kind == "checker":
        cells = (np.floor((u + rr) / (rr * 0.5)) + np.floor((v + rr) / (rr * 0.5))) % 2 == 0
        return (np.abs(u) < rr) & (np.abs(v) < rr) & cells
    if kind == "halfmoon":
        return (dist < rr) & (np.sqrt((u - rr * 0.5) ** 2 + v**2) > rr * 0.8)
    raise ValueError(kind)


def generate(count, seed):
    """Return (images uint8 [count, 32, 32, 3], labels int64 [count])."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % len(CLASSES)
    rng.shuffle(labels)
    yy, xx = np.mgrid[0:32, 0:32].astype(np.float32)
    cx, cy = rng.uniform(10, 22, count), rng.uniform(10, 22, count)
    r = rng.uniform(6.0, 11.0, count)
    ang = rng.uniform(-0.35, 0.35, count)
    dx, dy = xx[None] - cx[:, None, None], yy[None] - cy[:, None, None]
    mask = np.zeros((count, 32, 32), bool)
    for k, kind in enumerate(CLASSES):
        sel = labels == k
        mask[sel] = _masks(kind, dx[sel], dy[sel], r[sel], ang[sel])
    bg = rng.uniform(0.2, 0.8, (count, 1, 1, 3))
    grad = rng.uniform(-0.25, 0.25, (count, 1, 1, 2))
    background = bg + grad[..., :1] * (xx[None, :, :, None] / 31 - 0.5) + grad[..., 1:] * (yy[None, :, :, None] / 31 - 0.5)
    contrast = rng.uniform(0.08, 0.6, (count, 1, 1, 1)) * rng.choice([-1.0, 1.0], (count, 1, 1, 1))
    tint = rng.uniform(0.5, 1.0, (count, 1, 1, 3))
    image = background + mask[..., None] * contrast * tint
    clutter = _clutter(rng, count, xx, yy)
    image += clutter[..., None] * rng.uniform(-0.3, 0.3, (count, 1, 1, 3))
    image += rng.normal(0.0, 0.06, image.shape)
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8), labels.astype(np.int64)


def _clutter(rng, count, xx, yy):
    """A small random rectangle in half of the images."""
    x0, y0 = rng.uniform(0, 28, count), rng.uniform(0, 28, count)
    w, h = rng.uniform(2, 6, count), rng.uniform(2, 6, count)
    on = rng.random(count) < 0.5
    inside = (xx[None] >= x0[:, None, None]) & (xx[None] < (x0 + w)[:, None, None])
    inside &= (yy[None] >= y0[:, None, None]) & (yy[None] < (y0 + h)[:, None, None])
    return inside & on[:, None, None]


def load_synthetic(train_size=10000, test_size=2000, seed=0, image_size=32):
    """Return (train, test) ImageSets; train and test come from disjoint seeds.

    Generation takes seconds, so the arrays are kept in the user cache directory
    (the same one as decoded image folders); they are a pure function of the sizes,
    the seed and GENERATOR_VERSION. At another `image_size` the same 32x32 images
    are scaled (bilinear) to image_size x image_size, cached per size.
    """
    if image_size != 32:
        cached = cache_dir() / f"synthetic-v{GENERATOR_VERSION}-{train_size}-{test_size}-{seed}-scaled{image_size}.npz"
        if not cached.is_file():
            base = load_synthetic(train_size, test_size, seed)
            arrays = {f"{split}_images": scale_arrays(images.images, image_size) for split, images in zip(("train", "test"), base)}
            arrays.update({f"{split}_labels": images.labels for split, images in zip(("train", "test"), base)})
            with atomic_path(cached) as tmp:
                with open(tmp, "wb") as handle:
                    np.savez(handle, **arrays)
    else:
        cached = cache_dir() / f"synthetic-v{GENERATOR_VERSION}-{train_size}-{test_size}-{seed}.npz"
    arrays = {}
    if cached.is_file():
        with np.load(cached) as data:
            arrays = {k: data[k] for k in data.files}
    else:
        for split, size, split_seed in (("train", train_size, seed * 2 + 11), ("test", test_size, seed * 2 + 12)):
            arrays[f"{split}_images"], arrays[f"{split}_labels"] = generate(size, split_seed)
        with atomic_path(cached) as tmp:
            with open(tmp, "wb") as handle:
                np.savez(handle, **arrays)
    return tuple(
        ImageSet(arrays[f"{split}_images"], arrays[f"{split}_labels"], [f"synthetic/{split}/{i}" for i in range(size)], list(CLASSES))
        for split, size in (("train", train_size), ("test", test_size))
    )
