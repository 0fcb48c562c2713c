"""From the flat twin to the deployable forms, as the last step ("conditionalize last").

- The static policy: from held-out skip rates, an always-skipped block is removed
  (its shortcut stays), an always-run block becomes plain (no gate head); only
  dynamic blocks keep a gate. `gates` still reports every block (constants for the
  static ones). `conditional-all` keeps every gated block dynamic; `pruned` is `auto`
  with every dynamic block plain (no gate, no If: the statically pruned network);
  `dense` makes every gated block plain (the gate-free network). Dynamic blocks named
  in `plain` (an If that costs more than the block saves, see cosinegate.bench.ifcost)
  become plain too.
- `conditionalize`: each dynamic block's residual branch (its nodes, the add and
  the post-ReLU) moves into the then-branch of an `If` whose condition is the
  0-D bool gate decision of the single sample; the else-branch is
  post(shortcut(x)). Branch outputs have equal static shapes and unique names,
  as TensorRT's IIfConditional requires. Batch 1 only: the condition is a scalar.
  The node making the then-branch output is named like its output (``block{i}/out_then``),
  a name no other layer of the branch starts with: TensorRT 8.5's parser takes as branch
  outputs every layer whose name starts with that node's name (``block{i}/relu`` would
  also catch ``block{i}/relu1``; cosinegate.layernames replays the rule).
- `mask`: every dynamic block is computed and selected per sample,
  y = post(s + g * F(x)); any batch, and the only form for paper-mode gates,
  which need F(x) before they can decide.
- `compact`: real skipping at any batch. Per dynamic block, NonZero on the gate decision
  (``logit > 0``, the tensor the other forms read) gives the rows whose gate is on; the
  batched tensors the residual branch reads (block input, shortcut) are gathered on axis 0
  to that sub-batch, the branch (its nodes and tensor names unchanged, the post's output
  renamed ``block{i}/out_run``) runs on it, and ScatterND writes its rows into post(shortcut)
  (``block{i}/out_skip``). An all-skip batch runs the branch on zero rows, an all-run batch on
  all of them. Sub-batch tensors have a data-dependent first dimension; the graph's input and
  outputs keep the static batch. TensorRT's parser imports NonZero from 8.5 on
  (cosinegate.layernames.COMPACT_OPS).

Blocks are found structurally from the anchors the flat twin names (see
export.py), so graphs with inserted nodes (e.g. Q/DQ) can be conditionalized too.
"""

import copy
from dataclasses import dataclass

import numpy as np
from onnx import helper, numpy_helper

from cosinegate.blockkinds import block_classes
from cosinegate.errors import CosineGateError
from cosinegate.graphmeta import BLOCK_POLICIES as POLICIES, block_kinds
from cosinegate.onnx.export import GATES, block_names, get_metadata, set_metadata
from cosinegate.onnx.passes import ancestors, infer_shapes, producers, remove_dead_nodes, toposort, used_names

STATIC_GATE_VALUE = {"always_skipped": 0.0, "always_run": 1.0}

PAPER_CONDITIONAL = (
    "paper-mode gates cannot be exported as `conditional`: their decision uses CIR, which needs "
    "F(x) first, so no block can be skipped before it is computed. Export with --form masked."
)
PAPER_COMPACT = PAPER_CONDITIONAL.replace("`conditional`", "`compact`")


@dataclass
class BlockPartition:
    """Node names of one block: residual branch (with add and post), shortcut, gate head."""

    residual: list
    shortcut: list
    gate: list
    gate_needs_residual: bool


def partition_block(graph, index):
    """Split block `index` of a flat or masked graph; None when it has no residual branch."""
    n = block_names(index)
    by_name = {node.name: node for node in graph.node}
    add = by_name.get(n["add"])
    if add is None:
        return None
    before = ancestors(graph, [n["input"]])
    shortcut_tensor, add_qdq = shortcut_input(graph, add)
    residual_tensor = add.input[1]
    shortcut = ancestors(graph, [shortcut_tensor]) - before
    residual = ancestors(graph, [residual_tensor]) - before - shortcut
    gate = ancestors(graph, [n["value"]]) - before - shortcut
    named_gate = {name for name in residual if name.startswith(n["prefix"] + "gate/")}
    needs_residual = bool(gate & (residual - named_gate))
    gate = (gate - residual) | named_gate
    residual = (residual - gate) | {add.name} | add_qdq | ancestors(graph, [n["out"]], stop={add.output[0]})
    order = [node.name for node in graph.node]
    return BlockPartition(
        residual=[x for x in order if x in residual],
        shortcut=[x for x in order if x in shortcut],
        gate=[x for x in order if x in gate],
        gate_needs_residual=needs_residual,
    )


def shortcut_input(graph, add):
    """(shortcut tensor, Q/DQ node names) of a block's add.

    A Q -> DQ pair that only feeds the add's shortcut input (TensorRT's INT8
    residual-add placement) belongs to the residual branch: the skip path
    (else-branch, removed block) reads the tensor in front of it.
    """
    made_by = producers(graph)
    dq = made_by.get(add.input[0])
    if dq is not None and dq.op_type == "DequantizeLinear":
        q = made_by.get(dq.input[0])
        readers = [node for node in graph.node if dq.input[0] in used_names(node) or add.input[0] in used_names(node)]
        if q is not None and q.op_type == "QuantizeLinear" and {r.name for r in readers} == {dq.name, add.name}:
            return q.input[0], {q.name, dq.name}
    return add.input[0], set()


def block_node_names(graph_or_model):
    """Per block: dict(block, residual=[...], shortcut=[...], gate=[...]) of node names.

    In a conditional graph a wrapped block lists its `If` then-branch nodes as residual;
    a removed block has an empty residual list.
    """
    graph = getattr(graph_or_model, "graph", graph_or_model)
    gates = next(o for o in graph.output if o.name == GATES)
    out = []
    for index in range(gates.type.tensor_type.shape.dim[1].dim_value):
        part = partition_block(graph, index) or _wrapped_partition(graph, index)
        out.append({"block": index, "residual": part.residual, "shortcut": part.shortcut, "gate": part.gate})
    return out


def _wrapped_partition(graph, index):
    """Partition of a block whose residual branch sits in an `If` or was removed."""
    n = block_names(index)
    before = ancestors(graph, [n["input"]])
    wrapped = [node for node in graph.node if node.name == f"block{index}/if"]
    if wrapped:
        branches = {a.name: a.g for a in wrapped[0].attribute}
        residual = [node.name for node in branches["then_branch"].node]
        shortcut = ancestors(graph, [branches["else_branch"].node[0].input[0]]) - before
        gate_roots = [wrapped[0].input[0], n["value"]]
    else:
        residual = []
        shortcut = ancestors(graph, [n["out"]]) - before
        gate_roots = [n["value"]]
    gate = ancestors(graph, gate_roots) - before - shortcut
    order = [node.name for node in graph.node]
    return BlockPartition(residual, [x for x in order if x in shortcut], [x for x in order if x in gate], False)


def resolve_policy(kinds, policy, skip_rates, plain=()):
    """Deployed kind per block: 'dynamic', 'always_run', 'always_skipped' (gated blocks) or unchanged."""
    kinds = _policy_kinds(kinds, policy, skip_rates)
    if policy == "pruned":
        plain = range(len(kinds))
    return ["always_run" if k == "dynamic" and i in plain else k for i, k in enumerate(kinds)]


def _policy_kinds(kinds, policy, skip_rates):
    if policy not in POLICIES:
        raise CosineGateError(f"unknown policy {policy!r}; choose one of {', '.join(POLICIES)}.")
    gated = [i for i, k in enumerate(kinds) if k == "gated"]
    if policy == "dense":
        return ["always_run" if k == "gated" else k for k in kinds]
    if policy == "conditional-all" or not gated:
        return ["dynamic" if k == "gated" else k for k in kinds]
    if skip_rates is None:
        raise CosineGateError(
            "--policy auto needs held-out skip rates, and this checkpoint stores none; pass --skip-rates FILE "
            "(a JSON list, or the JSON report of cosinegate evaluate --json) or use --policy conditional-all."
        )
    if len(skip_rates) != len(kinds):
        raise CosineGateError(
            f"{len(skip_rates)} skip rates given for a model with {len(kinds)} blocks; pass the skip rates of this checkpoint."
        )
    classes = block_classes(np.asarray(skip_rates, dtype=np.float64))
    return [classes[i] if k == "gated" else k for i, k in enumerate(kinds)]


def conditionalize(flat_graph, policy="auto", skip_rates=None, plain=()):
    """Flat twin -> conditional graph: one `If` per dynamic block (batch 1 only)."""
    meta = _flat_metadata(flat_graph)
    if meta["mode"] == "paper":
        raise CosineGateError(PAPER_CONDITIONAL)
    if meta["batch"] != 1:
        raise CosineGateError(
            f"the conditional form takes batch 1 (an If condition is one scalar), this graph has batch {meta['batch']}; "
            "export with --batch 1, or use --form compact for batches."
        )
    return _deploy(flat_graph, "conditional", policy, skip_rates, _wrap_in_if, plain)


def mask(flat_graph, policy="auto", skip_rates=None, plain=()):
    """Flat twin -> masked graph: dynamic blocks computed, y = post(s + g * F) per sample."""
    _flat_metadata(flat_graph)
    return _deploy(flat_graph, "masked", policy, skip_rates, _insert_mask, plain)


def compact(flat_graph, policy="auto", skip_rates=None, plain=()):
    """Flat twin -> compact graph: each dynamic block runs on the gathered sub-batch of samples whose gate is on."""
    meta = _flat_metadata(flat_graph)
    if meta["mode"] == "paper":
        raise CosineGateError(PAPER_COMPACT)
    return _deploy(flat_graph, "compact", policy, skip_rates, _compact_block, plain)


def _flat_metadata(model):
    meta = get_metadata(model)
    if meta.get("form") != "flat":
        raise CosineGateError(f"expected the flat twin, got a {meta.get('form', 'foreign')!r} graph; pass a graph from build_flat_graph.")
    return meta


def _deploy(flat_graph, form, policy, skip_rates, wrap, plain=()):
    meta = get_metadata(flat_graph)
    blocks = meta["blocks"]
    kinds = resolve_policy(block_kinds(meta), policy, skip_rates, plain)
    model = infer_shapes(copy.deepcopy(flat_graph))
    graph = model.graph
    shapes = {v.name: v.type for v in list(graph.value_info) + list(graph.output)}
    for index, kind in enumerate(kinds):
        if kind == "always_skipped":
            _remove_residual(graph, index, blocks[index]["post"])
        if kind in ("always_skipped", "always_run"):
            _fix_gate_column(graph, index, STATIC_GATE_VALUE[kind], meta["batch"])
        elif kind == "dynamic":
            wrap(graph, index, blocks[index]["post"], meta["batch"], shapes)
    remove_dead_nodes(graph)
    toposort(graph)
    new_blocks = [dict(b, kind=k) for b, k in zip(blocks, kinds)]
    set_metadata(model, form=form, policy=policy, blocks=new_blocks, **({"plain_by_cost": sorted(plain)} if plain else {}))
    return infer_shapes(model)


def _node(graph, name):
    return next(node for node in graph.node if node.name == name)


def _post_node(index, post, shortcut, out):
    op = "Relu" if post == "relu" else "Identity"
    return helper.make_node(op, [shortcut], [out], name=f"block{index}/skip")


def _remove_residual(graph, index, post):
    part = partition_block(graph, index)
    n = block_names(index)
    shortcut = shortcut_input(graph, _node(graph, n["add"]))[0]
    _drop_nodes(graph, set(part.residual))
    graph.node.append(_post_node(index, post, shortcut, n["out"]))


def _fix_gate_column(graph, index, value, batch):
    n = block_names(index)
    concat = _node(graph, n["gates_concat"])
    graph.initializer.append(numpy_helper.from_array(np.full((batch, 1), value, np.float32), n["fixed"]))
    concat.input[index] = n["fixed"]


def _drop_nodes(graph, names):
    keep = [node for node in graph.node if node.name not in names]
    del graph.node[:]
    graph.node.extend(keep)


def _insert_mask(graph, index, post, batch, shapes):
    n = block_names(index)
    add = _node(graph, n["add"])
    shape = f"block{index}/gate/mask_shape"
    graph.initializer.append(numpy_helper.from_array(np.array([batch, 1, 1, 1], np.int64), shape))
    mask = helper.make_node("Reshape", [n["value"], shape], [f"block{index}/gate/mask"], name=f"block{index}/gate/mask")
    apply = helper.make_node("Mul", [add.input[1], mask.output[0]], [f"block{index}/gate/apply"], name=f"block{index}/gate/apply")
    add.input[1] = apply.output[0]
    graph.node.extend([mask, apply])


def _residual_branch(graph, index, paper_error, action):
    """(names, nodes, outputs) of block ``index``'s residual branch; refused when the gate reads it (paper mode) or
    a tensor of it is read outside the block (then the branch cannot be moved: ``action`` names what was tried)."""
    part = partition_block(graph, index)
    if part.gate_needs_residual:
        raise CosineGateError(paper_error)
    inside = set(part.residual)
    branch = [node for node in graph.node if node.name in inside]
    produced = {out for node in branch for out in node.output}
    read_outside = {t for node in graph.node if node.name not in inside for t in used_names(node)}
    leaking = (produced & (read_outside | {o.name for o in graph.output})) - {block_names(index)["out"]}
    if leaking:
        raise ValueError(f"block {index}: tensors {sorted(leaking)} of the residual branch are read outside it; cannot {action}")
    return inside, branch, produced


def _wrap_in_if(graph, index, post, batch, shapes):
    n = block_names(index)
    inside, branch, _ = _residual_branch(graph, index, PAPER_CONDITIONAL, "wrap it in an If")
    branch = [copy.deepcopy(node) for node in branch]
    then_out, else_out = f"block{index}/out_then", f"block{index}/out_else"
    for node in branch:
        if n["out"] in node.output:  # named as its output: TensorRT 8.5 collects the outputs by layer-name prefix
            node.name = then_out
        node.output[:] = [then_out if o == n["out"] else o for o in node.output]
    out_type = shapes[n["out"]]
    then_graph = helper.make_graph(branch, f"block{index}/then", [], [helper.make_value_info(then_out, out_type)])
    shortcut = shortcut_input(graph, _node(graph, n["add"]))[0]
    skip = _post_node(index, post, shortcut, else_out)
    else_graph = helper.make_graph([skip], f"block{index}/else", [], [helper.make_value_info(else_out, out_type)])
    cond_shape = f"block{index}/gate/cond_shape"
    graph.initializer.append(numpy_helper.from_array(np.zeros((0,), np.int64), cond_shape))
    cond = helper.make_node("Reshape", [n["decision"], cond_shape], [f"block{index}/gate/cond"], name=f"block{index}/gate/cond")
    wrapped = helper.make_node("If", [cond.output[0]], [n["out"]], name=f"block{index}/if",
                               then_branch=then_graph, else_branch=else_graph)
    _drop_nodes(graph, inside)
    graph.node.extend([cond, wrapped])


def _compact_block(graph, index, post, batch, shapes):
    """Block `index` -> NonZero rows, Gather of what the residual branch reads, branch, ScatterND into post(shortcut)."""
    n = block_names(index)
    inside, branch, produced = _residual_branch(graph, index, PAPER_COMPACT, "compact it")
    shortcut = shortcut_input(graph, _node(graph, n["add"]))[0]  # before the branch is rewired to the sub-batch
    inits = {t.name for t in graph.initializer}
    outer = sorted({t for node in branch for t in used_names(node)} - produced - inits)
    p = f"block{index}/compact"
    run_out, skip_out = f"block{index}/out_run", f"block{index}/out_skip"
    graph.initializer.extend([
        numpy_helper.from_array(np.array([batch], np.int64), f"{p}/flat_shape"),
        numpy_helper.from_array(np.array([0], np.int64), f"{p}/axis0"),
    ])
    nodes = [
        helper.make_node("Reshape", [n["decision"], f"{p}/flat_shape"], [f"{p}/flat"], name=f"{p}/flat"),
        helper.make_node("NonZero", [f"{p}/flat"], [f"{p}/nonzero"], name=f"{p}/nonzero"),  # [1, k] int64
        helper.make_node("Squeeze", [f"{p}/nonzero", f"{p}/axis0"], [f"{p}/rows"], name=f"{p}/rows"),  # [k]: Gather
        helper.make_node("Transpose", [f"{p}/nonzero"], [f"{p}/index"], name=f"{p}/index", perm=[1, 0]),  # [k, 1]
    ]
    renamed = {}
    for k, tensor in enumerate(outer):
        dims = shapes[tensor].tensor_type.shape.dim if tensor in shapes else None
        if not dims or dims[0].dim_value != batch:
            raise ValueError(f"block {index}: the residual branch reads {tensor!r}, which is not batched; cannot compact it")
        renamed[tensor] = f"{p}/gather{k}"
        nodes.append(helper.make_node("Gather", [tensor, f"{p}/rows"], [renamed[tensor]], name=renamed[tensor], axis=0))
    for node in branch:
        node.input[:] = [renamed.get(t, t) for t in node.input]
        node.output[:] = [run_out if o == n["out"] else o for o in node.output]
    skip = _post_node(index, post, shortcut, skip_out)
    scatter = helper.make_node("ScatterND", [skip_out, f"{p}/index", run_out], [n["out"]], name=f"{p}/scatter")
    graph.node.extend(nodes + [skip, scatter])
