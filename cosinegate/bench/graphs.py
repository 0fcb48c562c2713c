"""Graph surgery and inspection for benchmarks: every gate forced on, one block cut out; metadata, MAC table, If count."""

from collections import namedtuple


def forced_on(onnx_path, out):
    """The conditional graph with every If condition replaced by Or(condition, True): all gates forced on,
    the If boundaries kept (the condition stays data-dependent, so no optimizer folds the If away)."""
    import onnx

    model = onnx.load(str(onnx_path))
    count = _force_on(model)
    onnx.save(model, str(out))
    return count


def forced_on_model(model):
    """A copy of ``model`` with every gate forced on (see ``forced_on``)."""
    import copy

    model = copy.deepcopy(model)
    _force_on(model)
    return model


def _force_on(model):
    import numpy as np
    from onnx import helper, numpy_helper

    graph = model.graph
    graph.initializer.append(numpy_helper.from_array(np.array(True), "bench/forced_true"))
    new_nodes = []
    count = 0
    for node in graph.node:
        if node.op_type == "If":
            forced = f"{node.input[0]}/forced_on"
            new_nodes.append(helper.make_node("Or", [node.input[0], "bench/forced_true"], [forced], name=f"{node.name}/forced_on"))
            node.input[0] = forced
            count += 1
        new_nodes.append(node)
    del graph.node[:]
    graph.node.extend(new_nodes)
    return count


GraphInfo = namedtuple("GraphInfo", "meta table kinds num_if classes")


def graph_info(onnx_path):
    """GraphInfo of a toolkit graph (anything else: CosineGateError): its metadata, the MAC table of what it computes,
    its block kinds, its number of If nodes and of classes."""
    from cosinegate.errors import CosineGateError
    from cosinegate.graphmeta import block_kinds, if_count
    from cosinegate.macs import graph_mac_table
    from cosinegate.onnx.checks import load_toolkit_onnx
    from cosinegate.onnx.export import get_metadata

    model = load_toolkit_onnx(onnx_path)
    meta = get_metadata(model)
    dims = next(o for o in model.graph.output if o.name == "logits").type.tensor_type.shape.dim
    if len(dims) != 2 or dims[1].dim_value < 1:
        raise CosineGateError(f"{onnx_path}: output `logits` is not [N, classes]; export the model with cosinegate export.")
    classes = dims[1].dim_value
    table = graph_mac_table(meta, classes)
    kinds = block_kinds(meta)
    return GraphInfo(meta, table, kinds, if_count(model), classes)


def block_subgraph(model, index):
    """Block ``index`` of a toolkit graph alone: its input tensor in, its output tensor out (opset, IR kept)."""
    from onnx import helper

    from cosinegate.onnx.export import block_names
    from cosinegate.onnx.passes import ancestors, infer_shapes, used_names

    model = infer_shapes(model)
    graph = model.graph
    n = block_names(index)
    types = {v.name: v for v in list(graph.value_info) + list(graph.output) + list(graph.input)}
    live = ancestors(graph, [n["out"]], stop={n["input"]})
    nodes = [node for node in graph.node if node.name in live]
    read = {name for node in nodes for name in used_names(node)}
    inputs = [types[n["input"]]]
    sub = helper.make_graph(nodes, f"block{index}", inputs, [types[n["out"]]],
                            [t for t in graph.initializer if t.name in read])
    return helper.make_model(sub, opset_imports=list(model.opset_import), ir_version=model.ir_version)
