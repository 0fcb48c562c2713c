"""The toolkit's ONNX conventions that the device needs without PyTorch: tensor names and metadata.

``cosinegate.onnx.export`` (which needs torch) re-exports these; device-side code (engine manifests,
bench on an engine, parity) imports them from here.
"""

import json
import math

from cosinegate.errors import CosineGateError

INPUT, LOGITS, GATES = "input", "logits", "gates"
META_PREFIX = "cosinegate."


def set_metadata(model, **values):
    """Store toolkit metadata (JSON values) as `cosinegate.<key>` metadata_props."""
    props = {p.key: p.value for p in model.metadata_props}
    props.update({META_PREFIX + k: json.dumps(v) for k, v in values.items()})
    del model.metadata_props[:]
    for key in sorted(props):
        model.metadata_props.add(key=key, value=props[key])


def get_metadata(model):
    """The toolkit metadata of a model as a dict (empty for foreign graphs); the fields stages rely on
    (image_size, classes, normalization) are checked, and image_size against the graph's input shape."""
    out = {}
    for p in model.metadata_props:
        if p.key.startswith(META_PREFIX):
            try:
                out[p.key[len(META_PREFIX):]] = json.loads(p.value)
            except ValueError:
                continue
    problem = metadata_problem(out, input_hw(model))
    if problem:
        raise CosineGateError(f"the graph's metadata {problem}; re-export it with deploy/export_onnx.py from its checkpoint.")
    return out


def class_name_problem(name):
    """Why a class name cannot travel (labels.txt holds one name per line), or None."""
    if not isinstance(name, str) or not name.strip():
        return f"{name!r} is not a non-empty text"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        return f"{name!r} holds a control character (a line break would shift labels.txt)"
    return None


def metadata_problem(meta, hw=None):
    """What is wrong with toolkit metadata values (None when nothing is)."""
    size = meta.get("image_size")
    if size is not None:
        if isinstance(size, bool) or not isinstance(size, int) or not 8 <= size <= 4096:
            return f"cosinegate.image_size = {size!r} is not an input size between 8 and 4096"
        if hw is not None and hw != (size, size):
            return f"cosinegate.image_size = {size} disagrees with the graph's input {hw[0]}x{hw[1]}"
    classes = meta.get("classes")
    if classes is not None:
        if not isinstance(classes, list) or not classes:
            return f"cosinegate.classes = {str(classes)[:80]!r} is not a list of class names"
        bad = next((c for c in classes if class_name_problem(c)), None)
        if bad is not None or len(set(classes)) != len(classes):
            return f"cosinegate.classes: {class_name_problem(bad) if bad is not None else 'names repeat'}"
    norm = meta.get("normalization")
    problem = None if norm is None else normalization_problem(norm)
    return f"cosinegate.normalization {problem}" if problem else None


def normalization_problem(norm):
    """What is wrong with stored normalization numbers {"mean": [3], "std": [3]} (None when nothing is): the one
    check for graph metadata and checkpoints."""
    try:
        mean, std = ([float(v) for v in norm[key]] for key in ("mean", "std"))
    except (TypeError, ValueError, KeyError):
        return f"= {str(norm)[:80]!r} has no 3 means and 3 stds"
    if len(mean) != 3 or len(std) != 3 or not all(map(math.isfinite, mean + std)) or min(std) <= 0:
        return f"mean {mean} std {std} is not 3 finite means and 3 finite positive stds"
    return None


def input_hw(model):
    """(height, width) of the graph's input when both are fixed numbers, else None."""
    inputs = [i for i in model.graph.input if i.name == INPUT]
    if not inputs:
        return None
    dims = inputs[0].type.tensor_type.shape.dim
    if len(dims) != 4 or not all(d.HasField("dim_value") for d in dims[2:]):
        return None
    return dims[2].dim_value, dims[3].dim_value


CARD_KEYS = ("classes", "input_layout", "input_size", "input_dtype", "normalization", "gate_threshold", "data",
             "checkpoint_sha256", "policy", "blocks", "mode", "backbone")


def card_of(meta):
    """The card fields (plus block policy) of a graph's toolkit metadata (cosinegate.onnx.card makes the card)."""
    return {key: meta[key] for key in CARD_KEYS if key in meta}
