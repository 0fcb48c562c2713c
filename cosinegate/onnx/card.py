"""What a user needs to run an exported model without this repository, as plain numbers and names.

Stored in the ONNX metadata (`cosinegate.<key>`), copied into the export, calibration,
bundle and engine manifests; the class names also go to `labels.txt` in a bundle.
"""

from cosinegate.artifacts import sha256_file
from cosinegate.data.resize import CROP_FRACTION, resized_side
from cosinegate.graphmeta import card_of  # noqa: F401 (re-exported; torch-free there for the device)


def gate_threshold(model):
    """How a gate decides, as numbers: the block runs when `on` > `threshold`."""
    if model.mode == "paper":
        return {"on": "sigmoid(logit)", "threshold": float(model.blocks[0].gate.threshold) if model.blocks else 0.42,
                "rule": "block runs when sigmoid(logit) > threshold"}
    if model.mode == "predictive":
        return {"on": "logit", "threshold": 0.0, "rule": "block runs when logit > threshold"}
    return None


def normalization(model):
    """The model's input preprocessing (its checkpoint's mean/std) as numbers."""
    norm = model.normalization
    return {"pixel_range": [0, 255], "scale": 1.0 / 255.0, "mean": [float(v) for v in norm["mean"]],
            "std": [float(v) for v in norm["std"]], "source": norm.get("source"), "channel_order": "RGB",
            "formula": "x = (pixel * scale - mean[c]) / std[c]"}


def preprocessing(model, norm, rule=None):
    """How an image file becomes the network input, as the board's run_engine.py applies it (cosinegate.data.resize
    and imagefolder). `rule` is the resize rule the checkpoint's test split used (its `input_resize`):

    - "native": an image already N x N is taken as it is, any other is resized and center-cropped;
    - "eval": every image, N x N ones included, is resized and center-cropped (a folder of mixed sizes, as
      resize.split_rule decided on the desktop);
    - None (a checkpoint from before the rule was stored): "native-or-center-crop", decided per image (as "native")."""
    size = int(model.image_size)
    side = resized_side(size)
    how = f"shorter side to round({size}/{CROP_FRACTION}) = {side} (bilinear, Pillow), center crop {size}x{size}"
    if rule == "eval":
        resize, text = "eval", f"every image, {size}x{size} ones included (the training data's sizes were mixed): {how}"
    else:
        resize = "native" if rule == "native" else "native-or-center-crop"
        text = f"an image of {size}x{size} is taken as it is (native); any other: {how}"
    return {"decode": "RGB", "decode_rule": "EXIF orientation applied; grayscale, palette, RGBA, CMYK converted to RGB; "
                                          "16-bit images scaled to 8 bits (value >> 8)",
            "resize": resize, "native_size": [size, size], "resize_shorter_side": side,
            "crop_fraction": CROP_FRACTION, "crop": [size, size], "interpolation": "bilinear",
            "resize_rule": text,
            "pixel_range": [0, 255], "scale": 1.0 / 255.0, "mean": norm["mean"], "std": norm["std"], "channel_order": "RGB",
            "layout": "NCHW", "dtype": "float32", "input": "input", "input_shape": [3, size, size],
            "formula": "x[c] = (float32(pixel[c]) / 255 - mean[c]) / std[c], float32"}


def input_resize_of(state):
    """The resize rule a checkpoint's test split used: its stored `input_resize` (native or eval); synthetic and
    CIFAR-10 data are native; None for an image-folder checkpoint from before the rule was stored."""
    rule = state.get("input_resize")
    if rule in ("native", "eval"):
        return rule
    source = ((state.get("config") or {}).get("data") or {}).get("source")
    return "native" if source in ("synthetic", "cifar10") else None


def mac_counts(model):
    """Per-block MACs of the model (cosinegate.macs) and how a run's executed MACs follow from its gates output."""
    from cosinegate.macs import mac_table, model_mac_table

    table = model_mac_table(model)
    full = mac_table(model.backbone, "none", model.num_classes, image_size=model.image_size)
    return {"stem": int(table.stem), "classifier": int(table.classifier), "dense": int(full.dense),
            "blocks": [{"residual": int(b.residual), "shortcut": int(b.shortcut), "gate": int(b.gate)} for b in table.blocks],
            "residual_always_computed": model.mode == "paper",
            "rule": "executed = stem + classifier + sum over blocks of (shortcut + gate unless the export fixed the block "
                    "(kind always_run or always_skipped) + residual if the block ran (gates > 0.5), or if it is computed "
                    "anyway: residual_always_computed, or a gated block of a masked graph); savings = 1 - executed / dense"}


def model_card(checkpoint, state, model):
    """Class names, input size/layout, normalization, gate threshold, training data and checkpoint hash."""
    data = state["config"]["data"]
    return {
        "classes": list(state.get("classes") or [str(i) for i in range(model.num_classes)]),
        "input_layout": "NCHW",
        "input_size": [3, model.image_size, model.image_size],
        "input_dtype": "float32",
        "normalization": normalization(model),
        "preprocessing": preprocessing(model, normalization(model), input_resize_of(state)),
        "macs": mac_counts(model),
        "gate_threshold": gate_threshold(model),
        "data": {"source": data["source"], "root": None if data.get("root") is None else str(data["root"])},
        "checkpoint_sha256": sha256_file(checkpoint),
    }
