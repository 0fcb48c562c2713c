"""Which ONNX node names TensorRT handles: its ONNX parser's ``If`` import replayed per release, and the names trtexec
can pin by (``check_layer_names``, run by export, calibration and cosinegate build-engine). No TensorRT, no torch: core.

How TensorRT's ONNX parser (onnx-tensorrt) imports an ``If``, per release, replayed on the ONNX graph:

Read from onnx/onnx-tensorrt at the branches release/8.5-GA (TensorRT 8.5, JetPack 5.1), release/8.6-GA
(JetPack 6.0) and release/10.1-GA (10.x):

- Layer names: each node's layer is registered under the node's name, made unique with ``_N``
  (ImporterContext.cpp ``registerLayer`` l.92-103, ImporterContext.hpp ``generateUniqueName`` l.270-283, 8.5-GA);
  an initializer that a node reads as a tensor becomes a constant layer named after the initializer
  (onnx2trt_utils.cpp ``convertToTensor`` l.789-793; builtin_op_importers.cpp Q/DQ ``addConstantLayer`` l.1181-1184),
  except a Conv's initializer weights, which stay weights (builtin_op_importers.cpp Conv l.657-665).
- 8.5: the branch outputs are output 0 of every branch layer whose NAME STARTS WITH the name of a layer making a
  reported output (ConditionalHelpers.cpp ``findLayer`` l.27-33, ``getSubgraphOutputTensors`` l.185-192), and a
  branch layer whose name starts with the name of a branch layer that reads an outer tensor gets that layer's
  conditional inputs (``addConditionalInputIfNeeded`` l.108-125); then/else output counts must be equal (l.215-217).
- 8.6 and 10.x: the outputs are the exiting tensors themselves (8.6-GA ConditionalHelpers.cpp l.183-186; 10.1-GA
  keys by ``ITensor*``, l.249-256); conditional inputs go to layers whose name starts with an outer tensor's name
  (``findLayer`` l.27-33 compares with ``item.first->getName()``).
- Every release: the condition becomes a scalar only from a tensor of volume 1 (onnx2trt_utils.cpp
  ``convertToScalar`` l.756-766, 8.5-GA).
"""

from cosinegate.errors import CosineGateError

ANY_RELEASE = ("8.5", "8.6", "10")


def branch_layer_names(branch):
    """Names of the layers the parser may make for ``branch``: one per node, one per initializer read as a tensor."""
    names = [node.name for node in branch.node]
    for node in branch.node:
        weights = node.input[1:3] if node.op_type == "Conv" else ()
        names += [name for name in node.input if name and name not in weights and name not in names]
    return names


def _initializers(graphs):
    return {t.name for g in graphs for t in g.initializer}


def _layers(branch, scope_initializers):
    """Layer names of ``branch`` (nodes, and initializers read as tensors) in order of first appearance."""
    inits = scope_initializers | _initializers([branch])
    nodes = [node.name for node in branch.node]
    consts = [n for n in branch_layer_names(branch)[len(nodes):] if n in inits]
    return nodes + consts


def _producer(branch, tensor):
    return next((node.name for node in branch.node if tensor in node.output), None)


def branch_output_count_85(branch, scope_initializers=frozenset()):
    """How many outputs TensorRT 8.5's parser collects for ``branch`` (the ONNX branch declares len(branch.output))."""
    layers = _layers(branch, set(scope_initializers))
    keys = {_producer(branch, out.name) for out in branch.output} - {None}
    if not keys:  # no new layers make them: the ONNX outputs are used as they are
        return len(branch.output)
    return sum(1 for layer in layers if any(layer.startswith(key) for key in keys))


def _outer_readers(branch):
    produced = {o for node in branch.node for o in node.output}
    return {node.name: [t for t in node.input if t and t not in produced] for node in branch.node}


def input_prefix_problems(branch, release, scope_initializers=frozenset()):
    """Branch layers that the release's prefix match would give conditional inputs they do not read."""
    inits = set(scope_initializers) | _initializers([branch])
    reads = {name: [t for t in tensors if t not in inits] for name, tensors in _outer_readers(branch).items()}
    readers = {name: tensors for name, tensors in reads.items() if tensors}  # 8.5's keys: layers reading outer tensors
    outer = {t for tensors in readers.values() for t in tensors}  # 8.6/10.x's keys: the outer tensors
    problems = []
    for layer in _layers(branch, set(scope_initializers)):
        if release == "8.5":
            keys = [k for k in readers if layer.startswith(k) and k != layer]
        else:
            keys = [t for t in outer if layer.startswith(t) and t not in reads.get(layer, ())]
        if keys:
            problems.append(f"layer {layer!r} matches {sorted(keys)}")
    return problems


def if_problems(model, releases=ANY_RELEASE):
    """One line per ``If`` node of ``model`` that some release's parser would refuse or wire wrongly."""
    inits = _initializers([model.graph])
    problems = []
    for node in model.graph.node:
        if node.op_type != "If":
            continue
        branches = {a.name: a.g for a in node.attribute}
        for side in ("then_branch", "else_branch"):
            branch = branches[side]
            if "8.5" in releases:
                count = branch_output_count_85(branch, inits)
                if count != len(branch.output):
                    problems.append(
                        f"If {node.name!r}: TensorRT 8.5 collects {count} output(s) from its {side} (it declares "
                        f"{len(branch.output)}): a layer name starts with the name of the layer making the output")
            for release in releases:
                for problem in input_prefix_problems(branch, release, inits):
                    problems.append(f"If {node.name!r} {side}: on TensorRT {release}, {problem}")
    return problems


# Characters trtexec's --layerPrecisions/--layerOutputTypes parsing cannot carry in a layer name (sampleOptions.cpp,
# 8.5-10.x): ',' splits the list, ':' separates name and precision, a "'" is stripped (removeSingleQuotationMarks)
# or makes splitNameAndValue throw; control characters are refused too.
UNPINNABLE = ",:'"


def layer_name_problem(layer):
    """Why trtexec cannot pin ``layer`` by name (None when it can)."""
    if not layer:
        return "is empty"
    bad = sorted({ch for ch in layer if ch in UNPINNABLE or not ch.isprintable()})
    if bad:
        return f"holds {' '.join(repr(ch) for ch in bad)}, which trtexec's --layerPrecisions cannot carry"
    return None


def check_layer_names(model, source):
    """Refuse an ONNX ``model`` whose gate-head node names trtexec's --layerPrecisions cannot carry (they are pinned to
    FP32 by name in the bundle's build_on_device.sh), or whose ``If`` branches TensorRT's parser would import wrongly
    by layer name (``if_problems``): one line naming the problem and the fix. Returns ``model``."""
    problems = if_problems(model)
    if problems:
        raise CosineGateError(f"{source}: {problems[0]}; re-export the graph with cosinegate export (graphs of this "
                              "toolkit name each branch output's node like its output).")
    for node in model.graph.node:
        problem = layer_name_problem(node.name) if "/gate/" in node.name else None
        if problem:
            raise CosineGateError(
                f"{source}: ONNX node {node.name!r} {problem} (it is pinned to FP32 by name); rename the node "
                "(letters, digits, '/', '_', '.' and '-' are safe) or re-export the graph with cosinegate export."
            )
    return model


# The ONNX ops the compact form adds to a graph (cosinegate.onnx.conditionalize._compact_block), and the first TensorRT
# release whose ONNX parser imports each natively, read from onnx/onnx-tensorrt's op importers
# (DEFINE_BUILTIN_OP_IMPORTER in builtin_op_importers.cpp, onnxOpImporters.cpp from 10.0; lists per release in
# tests/data/onnx_importers/, checked by tests/trt/test_parser_ops.py): NonZero first appears at release/8.5-GA
# (builtin_op_importers.cpp l.5414-5422: ``addNonZero``, BOOL input accepted); the others are in 8.4-GA already.
# A release without an importer hands the node to the plugin fallback, which finds no plugin and fails the parse.
COMPACT_OPS = {"Reshape": "8.4", "NonZero": "8.5", "Squeeze": "8.4", "Transpose": "8.4", "Gather": "8.4",
               "ScatterND": "8.4"}
COMPACT_FLOOR = "8.5"


def compact_release_problem(version):
    """Why TensorRT ``version`` (a TrtVersion or text) cannot parse the compact form; None when it can."""
    from cosinegate.trtversion import parse_version

    version = parse_version(version)
    floor = tuple(int(p) for p in COMPACT_FLOOR.split("."))
    if version.at_least(*floor):
        return None
    missing = sorted(op for op, first in COMPACT_OPS.items() if not version.at_least(*map(int, first.split("."))))
    return (f"TensorRT {version}'s ONNX parser has no importer for {', '.join(missing)}, which --form compact uses "
            f"(from TensorRT {COMPACT_FLOOR}); use --form masked for batches on it")


def check_compact_releases(releases, where):
    """Refuse --form compact when one of ``releases`` (TensorRT versions) cannot parse it: one line naming it."""
    for release in releases:
        problem = compact_release_problem(release)
        if problem:
            raise CosineGateError(f"{where}: {problem}.")
