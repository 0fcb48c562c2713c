"""What a user needs to run an exported model without this repository, as plain numbers and names.

Stored in the ONNX metadata (`cosinegate.<key>`), copied into the export, calibration,
bundle and engine manifests; the class names also go to `labels.txt` in a bundle.
"""

from cosinegate.artifacts import sha256_file
from cosinegate.graphmeta import CARD_KEYS, card_of  # noqa: F401 (re-exported; torch-free there for the device)


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


def model_card(checkpoint, state, model):
    """Class names, input size/layout, normalization, gate threshold, training data and checkpoint hash."""
    data = state["config"]["data"]
    return {
        "classes": list(state.get("classes") or [str(i) for i in range(model.num_classes)]),
        "input_layout": "NCHW",
        "input_size": [3, model.image_size, model.image_size],
        "input_dtype": "float32",
        "normalization": normalization(model),
        "gate_threshold": gate_threshold(model),
        "data": {"source": data["source"], "root": None if data.get("root") is None else str(data["root"])},
        "checkpoint_sha256": sha256_file(checkpoint),
    }
