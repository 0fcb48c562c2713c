"""How images of any size and aspect become N x N arrays (Pillow, bilinear).

- native: every image of a split is already N x N: taken as it is (the CIFAR case;
  training then pads by N/8 and crops N, as the CIFAR recipe does);
- eval: shorter side to round(N / 0.875), center crop N x N (evaluation,
  calibration, parity, bench);
- train: shorter side to round(N / 0.875), center crop of that square; training
  crops N x N at random from it (and flips), so its objects have the scale of eval's.
"""

import numpy as np

from cosinegate.errors import CosineGateError

CROP_FRACTION = 0.875


def image_size_of(state):
    """The input size a checkpoint was trained at (32 for checkpoints written before it was stored)."""
    config = state.get("config") if isinstance(state.get("config"), dict) else {}
    return int((config.get("data") or {}).get("image_size") or 32)


def refuse_other_size(requested, size, source):
    """`size`; a different `requested` size (e.g. --image-size) is a CosineGateError naming `source`."""
    if requested is not None and int(requested) != int(size):
        raise CosineGateError(
            f"--image-size {requested} conflicts with {source}, made for {size}x{size} inputs; "
            f"drop --image-size (every stage uses the size it was trained at) or pass --image-size {size}."
        )
    return int(size)


def resized_side(size):
    """The shorter side images are resized to before cropping: round(N / 0.875) (256 for 224)."""
    return int(round(size / CROP_FRACTION))


def stored_size(size, rule):
    """Height = width of the arrays a rule stores."""
    return resized_side(size) if rule == "train" else size


def rule_key(size, rule):
    """Cache-key part naming the size and the resize rule."""
    return f"{size}-native" if rule == "native" else f"{size}-{rule}-short{resized_side(size)}-crop{stored_size(size, rule)}"


def fit(image, size, rule):
    """A Pillow RGB image -> uint8 [s, s, 3] under `rule` (s = stored_size(size, rule))."""
    from PIL import Image

    if rule == "native":
        return np.asarray(image, dtype=np.uint8)
    side, crop = resized_side(size), stored_size(size, rule)
    w, h = image.size
    scale = side / min(w, h)
    new = (max(crop, int(round(w * scale))), max(crop, int(round(h * scale))))
    image = image.resize(new, Image.BILINEAR)
    left, top = (new[0] - crop) // 2, (new[1] - crop) // 2
    return np.asarray(image.crop((left, top, left + crop, top + crop)), dtype=np.uint8)


def fit_arrays(images, size, rule):
    """uint8 [N, h, w, 3] -> [N, s, s, 3] under `rule` (native: as they are, no Pillow needed, as on the device)."""
    if rule == "native":
        return images
    from PIL import Image

    return np.stack([fit(Image.fromarray(a), size, rule) for a in images])


def scale_arrays(images, size):
    """uint8 [N, s, s, 3] -> [N, size, size, 3], bilinear (the synthetic set at another size)."""
    from PIL import Image

    if images.shape[1] == size:
        return images
    return np.stack([np.asarray(Image.fromarray(a).resize((size, size), Image.BILINEAR), dtype=np.uint8) for a in images])


def describe_sizes(shapes):
    """The sizes of a folder's images in a few words: '96x96', '96x96 and 128x96', or '5 sizes, 64x48 to 128x96'
    (from (width, height) pairs)."""
    found = sorted(set(tuple(s) for s in shapes), key=lambda s: (s[0] * s[1], s))
    names = [f"{w}x{h}" for w, h in found]
    if len(names) <= 2:
        return " and ".join(names)
    return f"{len(names)} sizes, {names[0]} to {names[-1]}"


def resize_note(found, size, whose, training=False):
    """The one line a stage prints when a folder's images (`found`, describe_sizes) are not size x size: how they
    are brought to the size `whose` names (e.g. "the checkpoint was trained at"), and for training how to change it."""
    side = resized_side(size)
    if training:
        how = f"shorter side to {side}, random {size}x{size} crops of its {side}x{side} center"
        change = "; --image-size N (data.image_size) trains at another size" + \
                 (f", --image-size {found.split('x')[0]} at theirs" if _square(found) else "")
    else:
        how, change = f"shorter side to {side}, center crop {size}", ""
    return f"note: images are {found}; {whose} {size}x{size}: they are resized ({how}){change}"


def _square(found):
    parts = found.split("x")
    return len(parts) == 2 and parts[0] == parts[1] and parts[0].isdigit()


def split_rule(shapes, size, training):
    """native when every (w, h) is size x size, else train (for a training split) or eval."""
    if all(tuple(s) == (size, size) for s in shapes):
        return "native"
    return "train" if training else "eval"


def center_crop(images, size):
    """uint8 [N, s, s, 3] -> the central [N, size, size, 3] (identity when s == size)."""
    s = images.shape[1]
    if s == size:
        return images
    top = (s - size) // 2
    return images[:, top : top + size, top : top + size]
