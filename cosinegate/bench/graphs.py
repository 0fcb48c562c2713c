"""Graph surgery and inspection for benchmarks: every gate forced on; metadata, MAC table and If count."""


def forced_on(onnx_path, out):
    """The conditional graph with every If condition replaced by Or(condition, True): all gates forced on,
    the If boundaries kept (the condition stays data-dependent, so no optimizer folds the If away)."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(onnx_path))
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
    onnx.save(model, str(out))
    return count


def graph_info(onnx_path):
    """(metadata, MAC table, block kinds, number of If nodes) of a toolkit graph."""
    import onnx

    from cosinegate.macs import mac_table
    from cosinegate.onnx.export import get_metadata

    model = onnx.load(str(onnx_path), load_external_data=False)
    meta = get_metadata(model)
    classes = next(o for o in model.graph.output if o.name == "logits").type.tensor_type.shape.dim[1].dim_value
    table = mac_table(meta.get("backbone", "resnet20"), meta.get("mode", "predictive"), classes or 10)
    kinds = [b["kind"] for b in meta.get("blocks", [])]
    return meta, table, kinds, sum(n.op_type == "If" for n in model.graph.node)
