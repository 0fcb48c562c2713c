"""Replays of the rules TensorRT's ONNX parser (onnx-tensorrt) applies to an If, over every graph the toolkit ships.

Graphs: ResNet-20 and ResNet-18 (random weights, 32x32), flat / masked / conditional (--policy auto and
conditional-all), fp32 and Q/DQ, plus the --if-cost If chain. The rules, read at onnx/onnx-tensorrt
release/8.5-GA, release/8.6-GA and release/10.1-GA (cosinegate/layernames.py cites file and line):

- If output collection: 8.5 by layer-name prefix (ConditionalHelpers.cpp l.27-33 ``findLayer``, l.185-192), 8.6/10.x
  by tensor (8.6-GA ConditionalHelpers.cpp l.183-186); then/else counts equal (8.5-GA l.215-217, 8.6-GA l.208-210).
- Conditional inputs by prefix: 8.5 on layer names (8.5-GA l.108-125), 8.6/10.x on outer tensor names (l.27-33).
- The condition: a tensor of volume 1 (onnx2trt_utils.cpp ``convertToScalar``, 8.5-GA l.756-766) of type bool
  (the ONNX If spec; TensorRT's IIfConditional::setCondition takes a boolean scalar).
- Branch outputs: equal static shapes and types (IIfConditional::addOutput pairs then/else tensors, 8.5-GA l.223).
- Outer-scope references: a branch reads only its own tensors, initializers, and outer tensors made before the If
  (the parser imports nodes in topological order: ModelImporter.cpp ``parseGraph`` l.110-121, 8.5-GA, and a branch's
  inputs must be registered, l.140).
- Layer names: a node's layer carries its name, made unique with ``_N`` (ImporterContext.cpp l.92-103,
  ImporterContext.hpp l.270-283), so every --layerPrecisions pin must be a node name no other layer takes.
"""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, shape_inference

from cosinegate.layernames import ANY_RELEASE, branch_layer_names, branch_output_count_85, if_problems

BACKBONES = ("resnet20", "resnet18")


def _model(backbone, relu_after_add=True):
    import torch

    from cosinegate.data.normalization import CIFAR10
    from cosinegate.models import build_model

    torch.manual_seed(0)
    model = build_model({"backbone": backbone, "mode": "predictive"}, 10, 32).eval()
    model.normalization = dict(CIFAR10)
    for block in model.blocks:
        block.relu_after_add = relu_after_add
    return model


def shipped_graphs(backbone, relu_after_add=True):
    """{label: ModelProto} of every form, precision path and policy the toolkit ships for ``backbone``."""
    from cosinegate.bench.ifcost import trivial_if_chain
    from cosinegate.onnx import build_flat_graph, conditionalize, get_metadata, mask, optimize_flat
    from cosinegate.quant.calibrate import quantize_flat, quantized_tensors

    flat = optimize_flat(build_flat_graph(_model(backbone, relu_after_add), 1))
    qdq = quantize_flat(flat, {t: 1.0 for t in quantized_tensors(flat)})
    skip_rates = [0.0, 1.0] + [0.5] * (len(get_metadata(flat)["blocks"]) - 2)  # always run, always skipped, dynamic
    graphs = {}
    for precision, twin in (("fp32", flat), ("qdq", qdq)):
        graphs[f"{precision}-flat"] = twin
        graphs[f"{precision}-masked"] = mask(twin, "auto", skip_rates)
        graphs[f"{precision}-conditional-auto"] = conditionalize(twin, "auto", skip_rates)
        graphs[f"{precision}-conditional-all"] = conditionalize(twin, "conditional-all")
    graphs["if-cost-chain"] = trivial_if_chain([3, 32, 32], 3, 17)
    return graphs


@pytest.fixture(scope="module", params=BACKBONES)
def graphs(request):
    return shipped_graphs(request.param)


def _ifs(model):
    return [node for node in model.graph.node if node.op_type == "If"]


def _branches(node):
    return {a.name: a.g for a in node.attribute}


def _types(model):
    inferred = shape_inference.infer_shapes(model, strict_mode=True).graph
    return {v.name: v.type.tensor_type for v in (*inferred.value_info, *inferred.input, *inferred.output)}


def test_conditional_graphs_have_ifs(graphs):
    assert all(_ifs(g) for label, g in graphs.items() if "conditional" in label or label == "if-cost-chain")
    assert not any(_ifs(g) for label, g in graphs.items() if "flat" in label or "masked" in label)


def test_trt85_collects_exactly_the_declared_branch_outputs(graphs):
    """Defect 1: `block{i}/relu` made the output and `block{i}/relu1` starts with it: 8.5 saw 2 then-outputs, 1 else."""
    for label, model in graphs.items():
        inits = {t.name for t in model.graph.initializer}
        for node in _ifs(model):
            for side, branch in _branches(node).items():
                assert branch_output_count_85(branch, inits) == len(branch.output) == 1, (label, node.name, side)


def test_no_release_wires_a_conditional_input_to_the_wrong_layer(graphs):
    for label, model in graphs.items():
        assert if_problems(model, ANY_RELEASE) == [], label


def test_branch_outputs_match_in_count_shape_and_type(graphs):
    for label, model in graphs.items():
        for node in _ifs(model):
            then, other = (_branches(node)[k] for k in ("then_branch", "else_branch"))
            assert len(then.output) == len(other.output) == len(node.output), (label, node.name)
            for a, b in zip(then.output, other.output):
                ta, tb = a.type.tensor_type, b.type.tensor_type
                assert ta.elem_type == tb.elem_type == TensorProto.FLOAT, (label, a.name)
                dims = [[d.dim_value for d in t.shape.dim] for t in (ta, tb)]
                assert dims[0] == dims[1] and all(d > 0 for d in dims[0]), (label, a.name, dims)


def test_the_condition_is_a_bool_of_volume_one(graphs):
    for label, model in graphs.items():
        types = _types(model)
        for node in _ifs(model):
            cond = types[node.input[0]]
            assert cond.elem_type == TensorProto.BOOL, (label, node.name)
            assert int(np.prod([d.dim_value for d in cond.shape.dim])) == 1, (label, node.name)


def test_branches_read_only_what_exists_before_their_if(graphs):
    for label, model in graphs.items():
        known = {t.name for t in model.graph.initializer} | {i.name for i in model.graph.input}
        for node in model.graph.node:
            if node.op_type == "If":
                for side, branch in _branches(node).items():
                    own = {t.name for t in branch.initializer}
                    for inner in branch.node:
                        for name in inner.input:
                            assert not name or name in known or name in own, (label, node.name, side, name)
                        own |= set(inner.output)
            known |= set(node.output)


def _all_layer_names(model):
    names = branch_layer_names(model.graph)
    for node in _ifs(model):
        for branch in _branches(node).values():
            names += branch_layer_names(branch)
    return names


def test_every_fp32_pin_names_a_layer_no_other_layer_shares(graphs, tmp_path):
    """The gate pins of build_on_device.sh (--layerPrecisions) and of the Python build match layer names exactly: a
    second layer of that name would be renamed `<name>_N` by the parser and one of the two would go unpinned."""
    from cosinegate.trt.build import gate_layer_names

    for label, model in graphs.items():
        if label == "if-cost-chain":
            continue
        path = tmp_path / f"{label}.onnx"
        onnx.save(model, str(path))
        pins = gate_layer_names(path)
        assert pins, label
        names = _all_layer_names(model)
        top = {node.name for node in model.graph.node}
        for pin in pins:
            assert pin in top and names.count(pin) == 1, (label, pin)


def test_the_replay_sees_the_old_names_fail_on_85():
    """The rule itself, on the naming conditionalize used before defect 1's fix."""
    def branch(names, out):
        nodes = [helper.make_node("Relu", [f"in{i}"], [f"t{i}"], name=n) for i, n in enumerate(names)]
        nodes[-1].output[0] = out
        return helper.make_graph(nodes, "b", [], [helper.make_tensor_value_info(out, TensorProto.FLOAT, [1])])

    assert branch_output_count_85(branch(["block3/conv1", "block3/relu1", "block3/relu"], "block3/out_then")) == 2
    assert branch_output_count_85(branch(["block3/conv1", "block3/relu1", "block3/out_then"], "block3/out_then")) == 1
    assert branch_output_count_85(branch(["block3/skip"], "block3/out_else")) == 1


def test_graphs_without_a_relu_after_the_add_also_import():
    """The issue's second 8.5 case (block output made by the add): with the Identity post the add never makes it."""
    graphs = {k: v for k, v in shipped_graphs("resnet20", relu_after_add=False).items() if "conditional" in k}
    for label, model in graphs.items():
        assert _ifs(model) and if_problems(model) == [], label


def test_a_graph_with_the_old_branch_names_is_refused_in_one_line():
    """check_layer_names (export, calibration, build_engine.py --onnx/--bundle) refuses a graph 8.5 would misimport."""
    from cosinegate.errors import CosineGateError
    from cosinegate.layernames import check_layer_names

    model = shipped_graphs("resnet20")["fp32-conditional-all"]
    assert check_layer_names(model, "new.onnx") is model
    node = _ifs(model)[0]
    then = _branches(node)["then_branch"]
    then.node[-1].name = node.name.replace("/if", "/relu")  # the name conditionalize gave it before
    with pytest.raises(CosineGateError, match=r"^old\.onnx: If .* TensorRT 8\.5 collects 2 .* re-export") as info:
        check_layer_names(model, "old.onnx")
    assert "\n" not in str(info.value)


def test_every_layer_a_gate_head_node_makes_carries_a_pinned_name(graphs, tmp_path):
    """Defect 9: a Gemm with a bias becomes the MatrixMultiply layer named after the node plus an UNNAMED ElementWise
    bias sum (onnx-tensorrt builtin_op_importers.cpp Gemm, 8.5-GA l.1609-1643, 8.6-GA l.1629-1664; 10.1-GA
    onnxOpImporters.cpp l.2042-2077), which no --layerPrecisions pin reaches, so a weakly typed build may run the
    gate's bias add in FP16. Gate heads must use only ops whose every layer is registered under the node name."""
    from cosinegate.trt.build import gate_layer_names

    for label, model in graphs.items():
        if label == "if-cost-chain":
            continue
        path = tmp_path / f"{label}.onnx"
        onnx.save(model, str(path))
        pinned = set(gate_layer_names(path))
        gemms = [n.name for n in model.graph.node if n.name in pinned and n.op_type == "Gemm" and len(n.input) > 2]
        assert not gemms, (label, gemms)
        heads = [n for n in model.graph.node if "/gate/" in n.name and n.op_type in ("MatMul", "Add")]
        assert heads and all(n.name in pinned for n in heads), label
