"""An ONNX Runtime-native conditional graph: ONNX Runtime's own kernels (NCHWc where it has them) inside each `If`.

ONNX Runtime runs its layout transformer (NCHWc, x86) and its fusions on the main graph but not inside
`If` branches, so a conditional graph loses the fast convolutions in every dynamic block (measured: +51%
with every gate on, ResNet-20, batch 1, 1 thread). Here the order is turned around once more: the
deploy policy is applied to the flat twin with the dynamic blocks left flat, ONNX Runtime optimizes
that whole graph offline (ORT_ENABLE_ALL), and only then is each dynamic block's *optimized* node set
cut out of it into an `If` (batch 1):

- the then-branch holds the block as ONNX Runtime runs it: fused convolutions (`com.microsoft.nchwc`
  Conv or `com.microsoft` FusedConv), the residual add fused into a convolution's Sum input where
  ONNX Runtime fused it, and the layout reorders only the block reads;
- the else-branch computes the block's shortcut alone: the shortcut tensor unchanged (identity and
  zero-padded shortcuts: with ReLU after the add every block reads a ReLU output, so ReLU(x) = x), or,
  where ONNX Runtime fused the add into the 1x1 projection-shortcut convolution, that convolution
  without its Sum input (its fused activation is the block's post-ReLU);
- a layout reorder that the skip path needs (or the gate head, or anything else outside the block) is
  kept before the `If`, so both branches hand on the same layout.

Nothing assumes NCHWc: without it (ARM builds of ONNX Runtime, or ``nchwc=False``, which disables the
NchwcTransformer here) the branches hold FusedConv nodes in NCHW and the same cut applies.

The result is tied to the ONNX Runtime version and CPU that optimized it (recorded in its metadata):
an artifact for the onnxrt backend, which loads it with optimizations disabled (it is marked
`runtime: onnxruntime-native`), never a graph for TensorRT.
"""

import copy
import os
import re
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from cosinegate.errors import CosineGateError
from cosinegate.graphmeta import all_nodes, block_kinds
from cosinegate.onnx.conditionalize import _deploy
from cosinegate.onnx.export import block_names, get_metadata, set_metadata
from cosinegate.onnx.passes import toposort

NCHWC_OPTIMIZER = "NchwcTransformer"  # ONNX Runtime's name for its x86 blocked-layout transformer
LAYOUT_OPS = {("com.microsoft.nchwc", "ReorderInput"), ("com.microsoft.nchwc", "ReorderOutput"), ("", "Transpose")}
POST_OPS = {("", "Relu"), ("", "Identity")}
_OWNER = re.compile(r"^(?:fused )?block(\d+)/(.*)$")  # ONNX Runtime keeps our node names (``block3/conv2_nchwc``)


def ort_optimize(model, threads=1, nchwc=True):
    """The graph as ONNX Runtime optimizes it at ORT_ENABLE_ALL on this machine (``nchwc=False``: without the
    NCHWc layout transformer, as on ARM builds, which have none)."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "in.onnx"), os.path.join(tmp, "out.onnx")
        onnx.save(model, src)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.optimized_model_filepath = dst
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        ort.InferenceSession(src, options, providers=["CPUExecutionProvider"],
                             disabled_optimizers=[] if nchwc else [NCHWC_OPTIMIZER])
        return onnx.load(dst)


def ort_native_conditional(flat_graph, policy="auto", skip_rates=None, threads=1, nchwc=True, plain=()):
    """Flat twin -> policy applied, ORT-optimized, then one `If` per dynamic block (batch 1).

    ``plain``: dynamic blocks kept plain (always run, no gate head), as in the portable export; with policy
    ``conditional-all`` and every gated block but one plain, the graph that prices that block's `If`
    (``cosinegate bench --if-cost`` on onnxrt)."""
    import onnxruntime as ort

    meta = get_metadata(flat_graph)
    if meta.get("mode") == "paper" or meta.get("batch") != 1:
        raise CosineGateError("the ORT-native conditional graph needs a predictive checkpoint exported at batch 1; "
                              "export the flat twin with --batch 1 (paper-mode gates: use the masked form).")
    static = _deploy(flat_graph, "flat", policy, skip_rates, lambda *args: None, plain)
    kinds = block_kinds(get_metadata(static))
    model = ort_optimize(static, threads, nchwc)
    _name_every_node(model.graph)
    for index, kind in enumerate(kinds):
        if kind == "dynamic":
            _wrap_optimized_block(model.graph, index)
    try:
        toposort(model.graph)
    except ValueError as exc:
        raise CosineGateError(f"ONNX Runtime's optimized graph cannot be split into one If per dynamic block ({exc}); "
                              "use the portable conditional graph.") from exc
    set_metadata(model, form="conditional", policy=policy, blocks=[dict(b, kind=k) for b, k in zip(meta["blocks"], kinds)])
    layout = "nchwc" if any(n.domain == "com.microsoft.nchwc" for n in all_nodes(model.graph)) else "nchw"
    set_metadata(model, runtime="onnxruntime-native", onnxruntime_version=ort.__version__, layout=layout)
    return model


def _name_every_node(graph):
    """Give a node ONNX Runtime left unnamed (or named like another) a name of its own: nodes are tracked by name."""
    seen = set()
    for k, node in enumerate(graph.node):
        if not node.name or node.name in seen:
            node.name = f"ort_node_{k}"
        seen.add(node.name)


def _owner(node):
    """(block index, rest of the name) of a node named after one of our blocks, else (None, '')."""
    m = _OWNER.match(node.name)
    return (int(m.group(1)), m.group(2)) if m else (None, "")


def _has_sum(node):
    """A convolution with ONNX Runtime's fused add (the Sum input of com.microsoft.nchwc Conv, Z of FusedConv)."""
    return (node.domain, node.op_type) in (("com.microsoft.nchwc", "Conv"), ("com.microsoft", "FusedConv")) and \
        len(node.input) >= 4 and node.input[3] != ""


class _Graph:
    """Producers and readers of every tensor of a graph's top level."""

    def __init__(self, graph):
        self.nodes = list(graph.node)
        self.by_name = {n.name: n for n in self.nodes}
        self.producer = {out: n.name for n in self.nodes for out in n.output}
        self.readers = {}
        for n in self.nodes:
            for name in n.input:
                self.readers.setdefault(name, set()).add(n.name)
        self.graph_outputs = {o.name for o in graph.output}


def block_region(graph, index):
    """Names of the nodes of block ``index``'s residual branch in an ORT-optimized graph (what its then-branch runs).

    Our node names survive as prefixes (``block3/conv2_nchwc``, ``block3/conv1``); a shortcut node that reads
    the residual branch (the projection convolution that absorbed the add) joins it, and so does an unnamed
    layout reorder when everything that reads it belongs to the block.
    """
    g = _Graph(graph)
    region = {n.name for n in g.nodes if _owner(n)[0] == index and not _owner(n)[1].startswith(("gate/", "shortcut/"))}
    changed = True
    while changed:
        changed = False
        made = {out for name in region for out in g.by_name[name].output}
        for n in g.nodes:
            if n.name in region:
                continue
            owner, rest = _owner(n)
            joins = owner == index and rest.startswith("shortcut/") and any(x in made for x in n.input)
            if not joins and owner is None and (n.domain, n.op_type) in LAYOUT_OPS:
                readers = {r for out in n.output for r in g.readers.get(out, ())}
                joins = bool(readers) and readers <= region and not set(n.output) & g.graph_outputs
            if joins:
                region.add(n.name)
                changed = True
    return region


def _hoist(g, region, tensor):
    """Make ``tensor`` available outside the region: the layout reorders in the region that produce it move out
    (they run before the If). False when a non-layout node of the region produces it."""
    while tensor in g.producer and g.producer[tensor] in region:
        node = g.by_name[g.producer[tensor]]
        if (node.domain, node.op_type) not in LAYOUT_OPS or len(node.output) != 1:
            return False
        region.discard(node.name)
        tensor = node.input[0]
    return True


def _skip_nodes(g, region, out, index, else_out):
    """The else-branch: nodes computing what block ``index`` hands on when skipped, ending in ``else_out``."""
    node, post = g.by_name[g.producer[out]], []
    while (node.domain, node.op_type) in POST_OPS and g.producer.get(node.input[0]) in region:
        post.append(node)
        node = g.by_name[g.producer[node.input[0]]]
    post = [copy.deepcopy(n) for n in reversed(post)]
    if node.domain == "" and node.op_type in ("Add", "Sum") and len(node.input) == 2:
        free = [t for t in node.input if _hoist(g, set(region), t)]
        if len(free) == 1 and _hoist(g, region, free[0]):
            made_by = g.by_name.get(g.producer.get(free[0]))
            projected = made_by is not None and made_by.op_type in ("Conv", "FusedConv")  # post(conv(x)) can differ from it
            return _chain([helper.make_node("Identity", [free[0]], ["?"])] + (post if projected else []), index, else_out)
    elif _has_sum(node):
        x, z = node.input[0], node.input[3]
        if _hoist(g, set(region), z):  # the identity shortcut, summed into the block's last convolution
            _hoist(g, region, z)
            return _chain([helper.make_node("Identity", [z], ["?"])], index, else_out)
        if _hoist(g, set(region), x):  # the projection shortcut absorbed the add: that convolution without its Sum
            _hoist(g, region, x)
            conv = copy.deepcopy(node)
            del conv.input[3:]
            return _chain([conv] + post, index, else_out)
    raise CosineGateError(f"block{index}: cannot find its shortcut in ONNX Runtime's optimized graph "
                          f"(the block ends in {node.domain or 'ai.onnx'}.{node.op_type}); use the portable conditional graph.")


def _chain(nodes, index, else_out):
    """``nodes`` as the else-branch: each reads the one before it, the last makes ``else_out``; named uniquely."""
    for i, n in enumerate(nodes):
        n.name = f"block{index}/ortif/skip{i}"
        n.output[:] = [else_out if i == len(nodes) - 1 else f"block{index}/ortif/skip{i}"]
        if i:
            n.input[0] = nodes[i - 1].output[0]
    return nodes


def _wrap_optimized_block(graph, index):
    g = _Graph(graph)
    region = block_region(graph, index)
    decision = block_names(index)["decision"]
    if decision not in g.producer:
        raise CosineGateError(f"block{index}: its gate decision is gone from ONNX Runtime's optimized graph; "
                              "use the portable conditional graph.")
    p = f"block{index}/ortif"
    then_out, else_out = f"{p}/then_out", f"{p}/else_out"
    outputs = _region_outputs(g, region)
    if len(outputs) != 1:
        raise CosineGateError(f"block{index}: expected one output of its residual branch in ONNX Runtime's optimized "
                              f"graph, found {sorted(outputs)}; use the portable conditional graph.")
    out = outputs[0]
    else_nodes = _skip_nodes(g, region, out, index, else_out)  # may move reorders out of the region
    if _region_outputs(g, region) != [out]:
        raise CosineGateError(f"block{index}: its skip path needs a tensor of its residual branch; use the portable conditional graph.")
    made = {o for name in region for o in g.by_name[name].output}
    if any(x in made for n in else_nodes for x in n.input):
        raise CosineGateError(f"block{index}: its skip path reads its residual branch; use the portable conditional graph.")
    value = lambda name: helper.make_tensor_value_info(name, TensorProto.FLOAT, None)  # noqa: E731
    then_nodes = [copy.deepcopy(n) for n in g.nodes if n.name in region]
    for n in then_nodes:
        n.output[:] = [then_out if o == out else o for o in n.output]
    then_graph = helper.make_graph(then_nodes, f"{p}/then", [], [value(then_out)])
    else_graph = helper.make_graph(else_nodes, f"{p}/else", [], [value(else_out)])
    scalar_shape = f"{p}/scalar_shape"
    graph.initializer.append(numpy_helper.from_array(np.zeros(0, np.int64), scalar_shape))
    cond = helper.make_node("Reshape", [decision, scalar_shape], [f"{p}/cond"], name=f"{p}/cond")
    wrapped = helper.make_node("If", [cond.output[0]], [out], name=p, then_branch=then_graph, else_branch=else_graph)
    keep = [n for n in g.nodes if n.name not in region]
    del graph.node[:]
    graph.node.extend(keep + [cond, wrapped])


def _region_outputs(g, region):
    made = [o for n in g.nodes if n.name in region for o in n.output]
    return [o for o in made if o in g.graph_outputs or g.readers.get(o, set()) - region]
