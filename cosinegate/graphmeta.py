"""The toolkit's ONNX conventions that the device needs without PyTorch: tensor names and metadata.

``cosinegate.onnx.export`` (which needs torch) re-exports these; device-side code (engine manifests,
bench on an engine, parity) imports them from here.
"""

import json

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
    """The toolkit metadata of a model as a dict (empty for foreign graphs)."""
    out = {}
    for p in model.metadata_props:
        if p.key.startswith(META_PREFIX):
            try:
                out[p.key[len(META_PREFIX):]] = json.loads(p.value)
            except ValueError:
                continue
    return out
