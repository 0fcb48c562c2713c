"""Graph passes: constant folding and cleanup of the flat twin, shape inference, and the
small node-level helpers (producers, ancestors, dead nodes, topological order) that the
conditionalize step works with.

Nodes are addressed by name; toolkit graphs name every node uniquely.
"""

import onnx


def optimize_flat(model):
    """Fold constants, drop dead nodes, sort, and infer every shape (metadata and IR kept)."""
    import onnx_graphsurgeon as gs  # desktop only: the device extra (conditionalize, --if-cost there) has none

    graph = gs.import_onnx(model)
    graph.fold_constants().cleanup(remove_unused_graph_inputs=True).toposort()
    out = gs.export_onnx(graph)
    out.ir_version = model.ir_version
    out.producer_name = model.producer_name
    out.metadata_props.extend(model.metadata_props)
    return infer_shapes(out)


def infer_shapes(model):
    """Strict ONNX shape inference (value_info rewritten from scratch)."""
    del model.graph.value_info[:]
    return onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)


def subgraphs(node):
    return [a.g for a in node.attribute if a.type == onnx.AttributeProto.GRAPH]


def used_names(node):
    """Tensor names a node reads, including outer-scope names its subgraphs read."""
    names = [n for n in node.input if n]
    for sub in subgraphs(node):
        names += sorted(outer_scope_names(sub))
    return names


def outer_scope_names(graph):
    """Names a (sub)graph reads but neither produces nor declares."""
    local = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    local |= {o for n in graph.node for o in n.output}
    reads = {name for n in graph.node for name in used_names(n)} | {o.name for o in graph.output}
    return reads - local


def producers(graph):
    return {out: node for node in graph.node for out in node.output if out}


def ancestors(graph, tensors, stop=()):
    """Names of the nodes that `tensors` depend on, not walking past the `stop` tensors."""
    made_by, seen, todo = producers(graph), set(), [t for t in tensors if t not in stop]
    while todo:
        node = made_by.get(todo.pop())
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        todo += [t for t in used_names(node) if t not in stop]
    return seen


def remove_dead_nodes(graph):
    """Drop nodes the graph outputs do not depend on, then initializers nothing reads (an initializer that is itself a
    graph output stays: a dense model's constant `gates`)."""
    live = ancestors(graph, [o.name for o in graph.output])
    keep = [n for n in graph.node if n.name in live]
    del graph.node[:]
    graph.node.extend(keep)
    read = {name for n in graph.node for name in used_names(n)} | {o.name for o in graph.output}
    inits = [t for t in graph.initializer if t.name in read]
    del graph.initializer[:]
    graph.initializer.extend(inits)


def toposort(graph):
    """Order nodes so each comes after the producers of everything it reads (stable)."""
    available = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(t in available for t in used_names(n))]
        if not ready:
            raise ValueError(f"graph has a cycle or missing inputs near node {pending[0].name!r}")
        for n in ready:
            ordered.append(n)
            available.update(n.output)
        done = {id(n) for n in ready}
        pending = [n for n in pending if id(n) not in done]
    del graph.node[:]
    graph.node.extend(ordered)
