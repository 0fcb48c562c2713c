"""Checks of exported graphs: ONNX validity, cleanliness, and the If rules TensorRT imposes."""

from pathlib import Path

import onnx
from onnx import TensorProto

from cosinegate.artifacts import check_input_file
from cosinegate.errors import CosineGateError
from cosinegate.graphmeta import all_nodes, all_tensors, graph_problem
from cosinegate.onnx.export import FORMAT, GATES, INPUT, LOGITS, get_metadata
from cosinegate.onnx.passes import ancestors, subgraphs


def is_toolkit_onnx(model):
    """True when the graph has this toolkit's interface (input `input`, outputs `logits` and `gates`) and its
    metadata (format, backbone, blocks): a foreign graph that merely reuses the names is not one."""
    outputs = {o.name for o in model.graph.output}
    meta = get_metadata(model)
    return ({LOGITS, GATES} <= outputs and INPUT in {i.name for i in model.graph.input} and meta.get("format") == FORMAT
            and isinstance(meta.get("blocks"), list) and isinstance(meta.get("backbone"), str))


def read_onnx(path):
    """The ONNX graph of ``path`` without its external data; a file that is not one is a CosineGateError."""
    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises several types for corrupt files
        raise CosineGateError(f"{path} is not a readable ONNX file ({type(exc).__name__}); re-export it.") from exc


def load_toolkit_onnx(path):
    """Load an ONNX file written by this toolkit; anything else is a CosineGateError."""
    path = Path(path)
    check_input_file(path, "ONNX file")
    model = read_onnx(path)
    if not is_toolkit_onnx(model):
        raise CosineGateError(
            f"{path} was not produced by this toolkit (it needs input `{INPUT}`, outputs `{LOGITS}` and `{GATES}` and the "
            "toolkit's metadata); "
            "export the model with cosinegate export."
        )

    problem = graph_problem(model)
    if problem:
        raise CosineGateError(f"{path}: {problem}; export the model with cosinegate export.")
    load_own_external_data(model, path)
    return model


def external_data_problem(model, folder):
    """Why the graph's external data is not plain files inside `folder` (None when it is, or when there is none)."""
    import os

    from onnx.external_data_helper import uses_external_data

    real_folder = Path(folder).resolve()
    for tensor in all_tensors(model):
        if not uses_external_data(tensor):
            continue
        location = {e.key: e.value for e in tensor.external_data}.get("location", "")
        target = Path(folder) / location
        if (not location or os.path.isabs(location) or ".." in Path(location).parts or not target.is_file()
                or target.resolve() != real_folder / location):  # a link anywhere on the way (a folder's too)
            return f"tensor {tensor.name!r} reads external data {location!r}, not a plain file beside the graph"
    return None


def load_own_external_data(model, path):
    """Read the graph's external data, refusing any that is not a plain file beside it (no ``..``, absolute path or link)."""
    from onnx.external_data_helper import load_external_data_for_model

    folder = Path(path).parent
    problem = external_data_problem(model, folder)
    if problem:
        raise CosineGateError(f"{path}: {problem}; a graph reads only its own files.")
    try:
        load_external_data_for_model(model, str(folder))
    except Exception as exc:  # noqa: BLE001 - onnx raises several types for unreadable external data
        raise CosineGateError(f"{path}: its external data is unreadable ({type(exc).__name__}); re-export it.") from exc


def graph_problems(model):
    """Readable problems of an exported, shape-inferred model; [] when it is clean."""
    problems = []
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        problems.append(f"checker: {str(exc).splitlines()[0]}")
    graph = model.graph
    types = _types(graph)
    sub_batch = get_metadata(model).get("form") == "compact"  # one data-dependent dimension: the gathered rows
    for node in all_nodes(graph):
        if node.op_type == "BatchNormalization":
            problems.append(f"{node.name}: BatchNormalization not folded")
        for out in node.output:
            if not _static(types.get(out), sub_batch):
                problems.append(f"{node.name}: output {out} has no complete static shape")
    live = ancestors(graph, [o.name for o in graph.output])
    problems += [f"{node.name}: dead node" for node in graph.node if node.name not in live]
    names = [node.name for node in all_nodes(graph)]
    if len(set(names)) != len(names) or "" in names:
        problems.append("node names are not unique and non-empty")
    for node in graph.node:
        if node.op_type == "If":
            problems += if_problems(node, types)
    return problems


def if_problems(node, types):
    """TensorRT's IIfConditional rules: 0-D bool condition, equal branch shapes, distinct output names."""
    problems = []
    cond = types.get(node.input[0])
    if cond is None or cond.tensor_type.elem_type != TensorProto.BOOL or len(cond.tensor_type.shape.dim) != 0:
        problems.append(f"{node.name}: condition is not a 0-D bool")
    branches = {a.name: a.g for a in node.attribute}
    then_out, else_out = branches["then_branch"].output, branches["else_branch"].output
    if [_shape(o.type) for o in then_out] != [_shape(o.type) for o in else_out]:
        problems.append(f"{node.name}: branch output shapes differ")
    names = [o.name for o in then_out] + [o.name for o in else_out] + list(node.output)
    if len(set(names)) != len(names):
        problems.append(f"{node.name}: branch output names are not unique")
    return problems


def assert_clean(model):
    """Raise RuntimeError listing the problems of a graph this toolkit built (a bug, not user input)."""
    problems = graph_problems(model)
    if problems:
        raise RuntimeError("exported graph failed its checks: " + "; ".join(problems[:10]))


def _types(graph):
    found = {v.name: v.type for v in list(graph.value_info) + list(graph.input) + list(graph.output)}
    found.update({t.name: onnx.helper.make_tensor_type_proto(t.data_type, list(t.dims)) for t in graph.initializer})
    for node in graph.node:
        for sub in subgraphs(node):
            found.update(_types(sub))
    return found


def _shape(type_proto):
    dims = type_proto.tensor_type.shape.dim
    return type_proto.tensor_type.elem_type, [d.dim_value if d.HasField("dim_value") else None for d in dims]


def _static(type_proto, sub_batch=False):
    """Every dimension known; with ``sub_batch`` (compact form) all but one, the number of gathered rows."""
    if type_proto is None or not type_proto.tensor_type.HasField("shape"):
        return False
    unknown = sum(not d.HasField("dim_value") for d in type_proto.tensor_type.shape.dim)
    return unknown <= (1 if sub_batch else 0)
