"""An ONNX Runtime-native conditional graph: the NCHWc layout survives inside each `If`.

ONNX Runtime runs its NCHWc layout transformer on the main graph but not inside
`If` branches, so a conditional graph loses the blocked-layout convolutions in
every dynamic block (measured: +51% with every gate on, ResNet-20, batch 1,
1 thread). Here the order is turned around once more: the deploy policy is
applied to the flat twin with the dynamic blocks left flat, ONNX Runtime
optimizes that whole graph offline (ORT_ENABLE_ALL), and only then is each dynamic
block's *optimized* node set wrapped into an `If`. The branches then hold
`com.microsoft.nchwc` kernels working on blocked tensors.

The result is tied to the ONNX Runtime version and CPU that optimized it: a
benchmark artifact for the onnxrt backend, which loads it with optimizations
disabled (it is marked `runtime: onnxruntime-native`), never a graph for TensorRT.
"""

import copy
import os
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from cosinegate.errors import CosineGateError
from cosinegate.onnx.conditionalize import _deploy
from cosinegate.onnx.export import block_names, get_metadata, set_metadata
from cosinegate.onnx.passes import toposort


def ort_optimize(model, threads=1):
    """The graph as ONNX Runtime optimizes it at ORT_ENABLE_ALL on this machine."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "in.onnx"), os.path.join(tmp, "out.onnx")
        onnx.save(model, src)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.optimized_model_filepath = dst
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        ort.InferenceSession(src, options, providers=["CPUExecutionProvider"])
        return onnx.load(dst)


def ort_native_conditional(flat_graph, policy="auto", skip_rates=None, threads=1):
    """Flat twin -> policy applied, ORT-optimized, then one `If` per dynamic block (batch 1)."""
    meta = get_metadata(flat_graph)
    if meta.get("mode") == "paper" or meta.get("batch") != 1:
        raise CosineGateError("the ORT-native conditional graph needs a predictive checkpoint exported at batch 1.")
    static = _deploy(flat_graph, "flat", policy, skip_rates, lambda *args: None)
    kinds = [b["kind"] for b in get_metadata(static)["blocks"]]
    model = ort_optimize(static, threads)
    for index, kind in enumerate(kinds):
        if kind == "dynamic":
            _wrap_optimized_block(model.graph, index)
    try:
        toposort(model.graph)
    except ValueError as exc:  # e.g. ORT fused a block's add into its projection shortcut, which then reads the If
        raise CosineGateError(f"ONNX Runtime's optimized graph cannot be split into one If per dynamic block ({exc}); "
                              "the portable conditional graph is unaffected.") from exc
    set_metadata(model, form="conditional", policy=policy, blocks=[dict(b, kind=k) for b, k in zip(meta["blocks"], kinds)])
    set_metadata(model, runtime="onnxruntime-native")
    return model


def _block_nodes(graph, index):
    """Names of block `index`'s residual-branch nodes in an ORT-optimized graph.

    ORT keeps our node names as prefixes (``block3/conv2_nchwc``); the layout
    reorders it inserts are unnamed, so a reorder joins the block when everything
    that reads it belongs to the block.
    """
    prefix, skip = f"block{index}/", (f"block{index}/gate/", f"block{index}/shortcut/")
    members = {n.name for n in graph.node if n.name.startswith(prefix) and not n.name.startswith(skip)}
    consumers = {}
    for n in graph.node:
        for name in n.input:
            consumers.setdefault(name, []).append(n.name)
    for n in graph.node:
        if n.domain == "com.microsoft.nchwc" and n.op_type in ("ReorderInput", "ReorderOutput") and n.name not in members:
            readers = [c for out in n.output for c in consumers.get(out, [])]
            if readers and all(c in members for c in readers):
                members.add(n.name)
    return members


def _skip_tensor(graph, index, members, produced_inside):
    """The tensor a skipped block passes on: the residual add's shortcut input (NCHW), or the
    `Sum` input of the fused NCHWc convolution that absorbed the add."""
    for n in graph.node:
        if n.name in members and n.op_type == "Add" and n.name == block_names(index)["add"]:
            outside = [x for x in n.input if x not in produced_inside]
            if len(outside) == 1:
                return outside[0]
    for n in graph.node:
        if n.name in members and n.domain == "com.microsoft.nchwc" and n.op_type == "Conv" and len(n.input) == 4:
            return n.input[3]
    raise CosineGateError(f"block{index}: cannot find its shortcut in the ORT-optimized graph; use the standard conditional form.")


def _wrap_optimized_block(graph, index):
    members = _block_nodes(graph, index)
    nodes = [n for n in graph.node if n.name in members]
    produced_inside = {out for n in nodes for out in n.output}
    used_outside = {x for n in graph.node if n.name not in members for x in n.input} | {o.name for o in graph.output}
    outputs = [x for x in produced_inside if x in used_outside]
    if len(outputs) != 1:
        raise CosineGateError(f"block{index}: expected one output in the ORT-optimized graph, found {outputs}.")
    out = outputs[0]
    skip = _skip_tensor(graph, index, members, produced_inside)
    p = f"block{index}/ortif"
    then_out, else_out = f"{p}/then_out", f"{p}/else_out"
    value = lambda name: helper.make_tensor_value_info(name, TensorProto.FLOAT, None)  # noqa: E731
    then_nodes = [copy.deepcopy(n) for n in nodes]
    for n in then_nodes:
        n.output[:] = [then_out if o == out else o for o in n.output]
    then_graph = helper.make_graph(then_nodes, f"{p}/then", [], [value(then_out)])
    else_graph = helper.make_graph([helper.make_node("Identity", [skip], [else_out], name=f"{p}/skip")], f"{p}/else", [], [value(else_out)])
    scalar_shape = f"{p}/scalar_shape"
    graph.initializer.append(numpy_helper.from_array(np.zeros(0, np.int64), scalar_shape))
    cond = helper.make_node("Reshape", [block_names(index)["decision"], scalar_shape], [f"{p}/cond"], name=f"{p}/cond")
    wrapped = helper.make_node("If", [cond.output[0]], [out], name=p, then_branch=then_graph, else_branch=else_graph)
    keep = [n for n in graph.node if n.name not in members]
    del graph.node[:]
    graph.node.extend(keep + [cond, wrapped])
