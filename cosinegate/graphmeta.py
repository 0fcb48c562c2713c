"""The toolkit's ONNX conventions that the device needs without PyTorch: tensor names and metadata.

``cosinegate.onnx.export`` (which needs torch) re-exports these; device-side code (engine manifests,
bench on an engine, parity) imports them from here.
"""

import json
import math

from cosinegate.errors import CosineGateError
from cosinegate.schema import MAX_DEPTH, MAX_GATE_HIDDEN, MAX_IMAGE_SIZE, MIN_IMAGE_SIZE, depth, is_sha256, shown, whole

INPUT, LOGITS, GATES = "input", "logits", "gates"
GRAPH_FORMS = ("conditional", "masked", "compact", "flat")  # docs/graph-forms.md; every command's --form choices
BLOCK_POLICIES = ("auto", "conditional-all", "pruned", "dense")  # which blocks get an If; the --policy choices
META_PREFIX = "cosinegate."
MAX_META_CHARS = 1 << 20  # one metadata value; the toolkit's are a few KiB
MIN_OPSET = 7
DOMAINS = ("", "ai.onnx", "com.microsoft", "com.microsoft.nchwc")  # standard, and ONNX Runtime's (ort_native graphs)


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
        if p.key.startswith(META_PREFIX) and len(p.value) <= MAX_META_CHARS:
            try:
                value = json.loads(p.value)
            except ValueError:
                continue
            except RecursionError:
                value = None
            if value is None and p.value.strip() != "null" or depth(value) > MAX_DEPTH:
                raise CosineGateError(f"the graph's metadata {p.key} is nested over {MAX_DEPTH} deep; re-export it with "
                                      "cosinegate export from its checkpoint.")
            out[p.key[len(META_PREFIX):]] = value
    problem = metadata_problem(out, input_hw(model), gate_count(model))
    if problem:
        raise CosineGateError(f"the graph's metadata {problem}; re-export it with cosinegate export from its checkpoint.")
    return out


def block_kinds(meta):
    """The kind of each block of toolkit metadata (gated, dynamic, always_run, always_skipped, dense, dropped: checked
    by get_metadata); [] for a graph that lists none."""
    return [b.get("kind") for b in meta.get("blocks") or ()]


def class_name_problem(name):
    """Why a class name cannot travel (labels.txt holds one name per line), or None."""
    if not isinstance(name, str) or not name.strip():
        return f"{name!r} is not a non-empty text"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        return f"{name!r} holds a control character (a line break would shift labels.txt)"
    return None


def metadata_problem(meta, hw=None, gates=None):
    """What is wrong with toolkit metadata values (None when nothing is); `hw` and `gates` are the graph's input
    height x width and gate count, which the metadata must agree with."""
    size = meta.get("image_size")
    if size is not None:
        if isinstance(size, bool) or not isinstance(size, int) or not MIN_IMAGE_SIZE <= size <= MAX_IMAGE_SIZE:
            return f"cosinegate.image_size = {shown(size)} is not an input size between {MIN_IMAGE_SIZE} and {MAX_IMAGE_SIZE}"
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
    if problem:
        return f"cosinegate.normalization {problem}"
    blocks = meta.get("blocks")
    if blocks is not None:
        if not isinstance(blocks, list) or not all(isinstance(b, dict) and isinstance(b.get("kind"), str) for b in blocks):
            return f"cosinegate.blocks = {shown(blocks)} is not a list of blocks with a kind"
        if gates is not None and len(blocks) != gates:
            return f"cosinegate.blocks lists {len(blocks)} blocks but the graph's gates output has {gates}"
    shape = meta.get("input_size")
    if shape is not None:
        if not (isinstance(shape, list) and len(shape) == 3 and all(whole(v) and 1 <= v <= MAX_IMAGE_SIZE for v in shape)):
            return f"cosinegate.input_size = {shown(shape)} is not [channels, height, width]"
        if hw is not None and tuple(shape[1:]) != tuple(hw):
            return f"cosinegate.input_size = {shape} disagrees with the graph's input {hw[0]}x{hw[1]}"
    pre = meta.get("preprocessing")
    problem = None if pre is None else preprocessing_problem(pre, hw)
    if problem:
        return f"cosinegate.preprocessing {problem}"
    macs = meta.get("macs")
    problem = None if macs is None else macs_problem(macs, gates)
    if problem:
        return f"cosinegate.macs {problem}"
    digest = meta.get("checkpoint_sha256")
    if digest is not None and not is_sha256(digest):
        return f"cosinegate.checkpoint_sha256 = {shown(digest)} is not a SHA-256 (64 hex digits)"
    data = meta.get("data")
    if data is not None and not (isinstance(data, dict) and isinstance(data.get("source"), str)
                                 and (data.get("root") is None or isinstance(data["root"], str))):
        return f"cosinegate.data = {shown(data)} is not a data source and root"
    batch = meta.get("batch")
    if batch is not None and not (whole(batch) and 1 <= batch <= 1 << 16):
        return f"cosinegate.batch = {shown(batch)} is not a batch size"
    hidden = meta.get("gate_hidden")
    if hidden is not None and not (whole(hidden) and 1 <= hidden <= MAX_GATE_HIDDEN):
        return f"cosinegate.gate_hidden = {shown(hidden)} is not a gate's hidden units (1..{MAX_GATE_HIDDEN})"
    for key in ("backbone", "form", "mode", "policy", "format"):
        if key in meta and not isinstance(meta[key], str):
            return f"cosinegate.{key} = {shown(meta[key])} is not a name"
    return None


def gate_count(model):
    """The fixed size of the graph's `gates` output's last axis, else None."""
    outputs = [o for o in model.graph.output if o.name == GATES]
    dims = outputs[0].type.tensor_type.shape.dim if outputs else []
    return dims[-1].dim_value if len(dims) == 2 and dims[-1].HasField("dim_value") else None


def if_count(model):
    """The number of If nodes at the graph's top level (one per gated block left conditional)."""
    return sum(node.op_type == "If" for node in model.graph.node)


def graph_problem(model):
    """What makes a graph unfit for the toolkit's tools (None when nothing does): an IR version or opset they do not
    take, model-local functions or sparse tensors (the toolkit's graphs have none, and the checks below would not
    see inside them), a node of a foreign domain, an input that is not float32 N x 3 x S x S, an If whose branches
    disagree."""
    import onnx

    if not 3 <= model.ir_version <= onnx.IR_VERSION:
        return f"IR version {model.ir_version} is not one this onnx {onnx.__version__} reads (3..{onnx.IR_VERSION})"
    if len(model.functions):
        return f"it defines {len(model.functions)} model-local function(s); the toolkit exports none"
    if any(len(g.sparse_initializer)
           or any(a.HasField("sparse_tensor") or len(a.sparse_tensors) for n in g.node for a in n.attribute)
           for g in all_graphs(model.graph)):
        return "it holds sparse tensors; the toolkit exports none"
    newest = onnx.defs.onnx_opset_version()
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx") and not MIN_OPSET <= opset.version <= newest:
            return f"opset {opset.version} is not one this onnx {onnx.__version__} reads ({MIN_OPSET}..{newest})"
    inputs = [i for i in model.graph.input if i.name == INPUT]
    if inputs:
        tensor = inputs[0].type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
        if tensor.elem_type != 1:  # TensorProto.FLOAT
            return f"input `{INPUT}` has element type {tensor.elem_type}, not float32 (1) as exported"
        if len(dims) != 4 or dims[1] != 3 or None in dims or dims[0] < 1 or not MIN_IMAGE_SIZE <= dims[2] <= MAX_IMAGE_SIZE or dims[2] != dims[3]:
            return f"input `{INPUT}` has shape {dims}, not N x 3 x S x S with S in {MIN_IMAGE_SIZE}..{MAX_IMAGE_SIZE} as exported"
    for node in all_nodes(model.graph):
        if node.domain not in DOMAINS:
            return f"node {node.name or node.op_type!r} is of domain {node.domain!r}; only standard ONNX (and ONNX Runtime's) is read"
        if node.op_type == "If":
            branches = {a.name: a.g for a in node.attribute}
            if set(branches) != {"then_branch", "else_branch"}:
                return f"If node {node.name!r} lacks a then or else branch"
            then_out, else_out = ([_declared(o.type) for o in branches[b].output] for b in ("then_branch", "else_branch"))
            if then_out != else_out:
                return f"If node {node.name!r} declares other outputs in its branches ({then_out} vs {else_out})"
    return None


def all_graphs(graph):
    """A graph and every If/Loop/Scan body inside it, at any depth (a model-local function's body too when
    ``graph`` is a FunctionProto: it has nodes, and its nodes may have bodies)."""
    stack = [graph]
    while stack:
        current = stack.pop()
        yield current
        for node in current.node:
            for attribute in node.attribute:
                if attribute.HasField("g"):
                    stack.append(attribute.g)
                stack.extend(attribute.graphs)


def all_nodes(graph):
    """Every node of a graph, those inside If/Loop/Scan bodies included."""
    for current in all_graphs(graph):
        yield from current.node


def all_tensors(model):
    """Every tensor that may name external data: initializers (sparse ones' values and indices too) and constant
    attributes of the graph, of every subgraph and of every model-local function."""
    for graph in [g for root in (model.graph, *model.functions) for g in all_graphs(root)]:
        for sparse in getattr(graph, "sparse_initializer", ()):  # a FunctionProto has no initializers
            yield from (sparse.values, sparse.indices)
        yield from getattr(graph, "initializer", ())
        for node in graph.node:
            for attribute in node.attribute:
                if attribute.HasField("t"):
                    yield attribute.t
                yield from attribute.tensors
                if attribute.HasField("sparse_tensor"):
                    yield from (attribute.sparse_tensor.values, attribute.sparse_tensor.indices)
                for sparse in attribute.sparse_tensors:
                    yield from (sparse.values, sparse.indices)


def _declared(type_proto):
    tensor = type_proto.tensor_type
    return tensor.elem_type, [d.dim_value if d.HasField("dim_value") else d.dim_param for d in tensor.shape.dim]


def normalization_problem(norm):
    """What is wrong with stored normalization numbers {"mean": [3], "std": [3]} (None when nothing is): the one
    check for graph metadata and checkpoints."""
    try:
        mean, std = ([float(v) for v in norm[key]] for key in ("mean", "std"))
    except (TypeError, ValueError, KeyError, OverflowError):
        return f"= {shown(norm, 80)} has no 3 means and 3 stds"
    if len(mean) != 3 or len(std) != 3 or not all(map(math.isfinite, mean + std)) or min(std) <= 0:
        return f"mean {mean} std {std} is not 3 finite means and 3 finite positive stds"
    return None


# cosinegate.onnx.card.preprocessing; the board's run_engine.py knows these: native-or-center-crop (older graphs,
# decided per image), native (the same), eval (every image resized + cropped, N x N ones included)
RESIZE_RULES = ("native-or-center-crop", "native", "eval")


def preprocessing_problem(pre, hw=None):
    """What is wrong with a stored preprocessing rule (cosinegate.onnx.card.preprocessing), None when nothing is;
    `hw` is the graph's input height x width, which its crop must equal."""
    if not isinstance(pre, dict):
        return f"= {shown(pre)} is not a preprocessing record"
    if pre.get("resize") not in RESIZE_RULES:
        return f"resize = {shown(pre.get('resize'))} is not one of {', '.join(RESIZE_RULES)}"
    crop, side = pre.get("crop"), pre.get("resize_shorter_side")
    if not (isinstance(crop, list) and len(crop) == 2 and all(whole(v) and MIN_IMAGE_SIZE <= v <= MAX_IMAGE_SIZE for v in crop)):
        return f"crop = {shown(crop)} is not [height, width]"
    if hw is not None and tuple(crop) != tuple(hw):
        return f"crop = {crop} disagrees with the graph's input {hw[0]}x{hw[1]}"
    if not (whole(side) and max(crop) <= side <= 4 * MAX_IMAGE_SIZE):
        return f"resize_shorter_side = {shown(side)} is not a side of at least the crop {max(crop)}"
    if pre.get("pixel_range") != [0, 255] or pre.get("layout") != "NCHW" or pre.get("dtype") != "float32":
        return (f"pixel range {shown(pre.get('pixel_range'))}, layout {shown(pre.get('layout'))}, dtype {shown(pre.get('dtype'))} "
                "are not [0, 255], NCHW, float32 (the only input the toolkit exports)")
    problem = normalization_problem(pre)
    return f"normalization {problem}" if problem else None


def macs_problem(macs, gates=None):
    """What is wrong with stored MAC counts (cosinegate.onnx.card.mac_counts), None when nothing is; `gates` is the
    graph's gate count, which must equal the number of blocks."""
    def count(v):
        return whole(v) and 0 <= v < 1 << 62

    if not isinstance(macs, dict) or not all(count(macs.get(k)) for k in ("stem", "classifier", "dense")):
        return f"= {shown(macs)} has no stem, classifier and dense MAC counts"
    blocks = macs.get("blocks")
    if not (isinstance(blocks, list) and all(isinstance(b, dict) and all(count(b.get(k)) for k in ("residual", "shortcut", "gate"))
                                             for b in blocks)):
        return "blocks is not a list of {residual, shortcut, gate} MAC counts"
    if gates is not None and len(blocks) != gates:
        return f"lists {len(blocks)} blocks but the graph's gates output has {gates}"
    if macs["dense"] <= 0:
        return "dense = 0 MACs"
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
             "checkpoint_sha256", "policy", "blocks", "mode", "backbone", "preprocessing", "macs")


def card_of(meta):
    """The card fields (plus block policy) of a graph's toolkit metadata (cosinegate.onnx.card makes the card)."""
    return {key: meta[key] for key in CARD_KEYS if key in meta}
