import numpy as np
import onnx
import onnx_graphsurgeon as gs
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from cosinegate.errors import CosineGateError
from cosinegate.quant.qdq import (
    insert_activation_qdq,
    insert_weight_qdq,
    quantize_weight_per_channel,
    weight_axis,
)
from cosinegate.quant.ranges import RangeCollector

CLASSES = 10


def gated_resnet_model(trans_b, opset=13):
    """Conv -> Relu -> Conv -> Add(residual) -> GAP -> Flatten -> Gemm, plus a gate head
    r1 -> GAP -> Flatten -> Gemm -> Greater that must stay FP32."""
    rng = np.random.default_rng(0)

    def init(name, shape, scale=0.3):
        return numpy_helper.from_array((rng.normal(size=shape) * scale).astype(np.float32), name)

    fc_shape = [CLASSES, 8] if trans_b else [8, CLASSES]
    initializers = [
        init("w1", [8, 4, 3, 3]),
        init("b1", [8], 0.1),
        init("w2", [8, 8, 3, 3], 0.15),
        init("b2", [8], 0.1),
        init("fc_w", fc_shape),
        init("fc_b", [CLASSES], 0.1),
        init("gate_w", [1, 8]),
        numpy_helper.from_array(np.zeros(1, np.float32), "gate_threshold"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c2", "r1"], ["sum"], name="residual_add"),
        helper.make_node("GlobalAveragePool", ["sum"], ["pooled"], name="pool"),
        helper.make_node("Flatten", ["pooled"], ["features"], name="flatten"),
        helper.make_node("Gemm", ["features", "fc_w", "fc_b"], ["logits"], name="fc", transB=trans_b),
        helper.make_node("GlobalAveragePool", ["r1"], ["gate_pooled"], name="gate_pool"),
        helper.make_node("Flatten", ["gate_pooled"], ["gate_features"], name="gate_flatten"),
        helper.make_node("Gemm", ["gate_features", "gate_w"], ["gate_score"], name="gate_fc", transB=1),
        helper.make_node("Greater", ["gate_score", "gate_threshold"], ["gate"], name="gate_greater"),
    ]
    graph = helper.make_graph(
        nodes,
        "gated_resnet",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 8, 8])],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", CLASSES]),
            helper.make_tensor_value_info("gate", TensorProto.BOOL, ["N", 1]),
        ],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def run(model, x, outputs=None):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip(outputs or [o.name for o in session.get_outputs()], session.run(outputs, {"x": x})))


def activation_amax(model, batches, names):
    """Calibrate with the range collector on intermediate tensors of the FP32 model."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.output.extend(helper.make_empty_tensor_value_info(name) for name in names if name != "x")
    collector = RangeCollector("minmax")
    for batch in batches:
        values = {"x": batch, **run(probe, batch, [name for name in names if name != "x"])}
        for name in names:
            collector.update(name, values[name])
    return collector.amax()


def quantize(model, amax):
    graph = gs.import_onnx(model)
    nodes = {node.name: node for node in graph.nodes}
    tensors = graph.tensors()
    insert_activation_qdq(graph, tensors["x"], amax["x"], "x")
    # r1 feeds conv2 and the residual Add in INT8; the gate head keeps FP32.
    insert_activation_qdq(graph, "r1", amax["r1"], "r1", consumers=[nodes["conv2"], nodes["residual_add"]])
    insert_activation_qdq(graph, tensors["c2"], amax["c2"], "c2")
    insert_activation_qdq(graph, tensors["features"], amax["features"], "features")
    for name in ("conv1", "conv2", "fc"):
        insert_weight_qdq(graph, nodes[name])
    return gs.export_onnx(graph)


@pytest.fixture(params=[1, 0], ids=["transB=1", "transB=0"])
def models(request):
    model = gated_resnet_model(trans_b=request.param)
    rng = np.random.default_rng(1)
    batches = [rng.normal(size=(n, 4, 8, 8)).astype(np.float32) for n in (3, 5, 8)]
    amax = activation_amax(model, batches, ["x", "r1", "c2", "features"])
    return request.param, model, quantize(model, amax), batches


def test_quantized_model_is_valid_and_close_to_fp32(models):
    _, fp32, qdq, batches = models
    onnx.checker.check_model(qdq, full_check=True)
    x = np.concatenate(batches)
    reference, quantized = run(fp32, x)["logits"], run(qdq, x)["logits"]
    relative_error = np.linalg.norm(quantized - reference) / np.linalg.norm(reference)
    assert 0.0 < relative_error < 0.05


def test_qdq_placement_zero_points_and_scale_shapes(models):
    trans_b, _, qdq, _ = models
    graph = gs.import_onnx(qdq)
    nodes = {node.name: node for node in graph.nodes}
    quantizers = [n for n in graph.nodes if n.op == "QuantizeLinear"]
    dequantizers = [n for n in graph.nodes if n.op == "DequantizeLinear"]
    assert len(quantizers) == len(dequantizers) == 7

    for node in quantizers + dequantizers:
        zero_point = node.inputs[2].values
        assert zero_point.dtype == np.int8 and not zero_point.any()
        assert node.inputs[1].values.dtype == np.float32 and (node.inputs[1].values > 0).all()

    def weight_dq(node_name):
        dq = nodes[node_name].inputs[1].inputs[0]
        assert dq.op == "DequantizeLinear"
        q = dq.inputs[0].inputs[0]
        assert q.op == "QuantizeLinear" and isinstance(q.inputs[0], gs.Constant)
        assert q.inputs[0].values.dtype == np.float32  # FP32 initializer -> Q -> DQ
        assert q.attrs["axis"] == dq.attrs["axis"]
        return dq

    assert weight_dq("conv1").attrs["axis"] == 0
    assert weight_dq("conv1").inputs[1].values.shape == (8,)
    assert weight_dq("conv2").inputs[1].values.shape == (8,)
    fc = weight_dq("fc")
    assert fc.attrs["axis"] == (0 if trans_b else 1)
    assert fc.inputs[1].values.shape == (CLASSES,)

    for consumer in ("conv1", "conv2", "residual_add", "fc"):
        activation = nodes[consumer].inputs[0 if consumer != "residual_add" else 1]
        dq = activation.inputs[0]
        assert dq.op == "DequantizeLinear" and "axis" not in dq.attrs
        assert dq.inputs[1].values.shape == ()
    assert nodes["residual_add"].inputs[0].inputs[0].op == "DequantizeLinear"


def test_gate_head_reads_fp32_tensor(models):
    _, _, qdq, _ = models
    graph = gs.import_onnx(qdq)
    r1 = graph.tensors()["r1"]
    assert {node.name for node in r1.outputs} == {"gate_pool", "r1_QuantizeLinear"}
    gate_pool = next(node for node in graph.nodes if node.name == "gate_pool")
    assert gate_pool.inputs[0] is r1 and r1.inputs[0].op == "Relu"
    gate_chain = {"gate_pool", "gate_flatten", "gate_fc", "gate_greater"}
    for node in graph.nodes:
        if node.name in gate_chain:
            assert all(not t.inputs or t.inputs[0].op not in ("QuantizeLinear", "DequantizeLinear") for t in node.inputs)


def test_gate_head_output_matches_fp32_given_same_r1(models):
    _, fp32, qdq, batches = models
    x = np.concatenate(batches)
    probe = onnx.ModelProto()
    probe.CopyFrom(qdq)
    probe.graph.output.extend([helper.make_empty_tensor_value_info("r1"), helper.make_empty_tensor_value_info("gate_score")])
    values = run(probe, x, ["r1", "gate_score"])
    gate_w = numpy_helper.to_array(next(i for i in fp32.graph.initializer if i.name == "gate_w"))
    expected = values["r1"].mean(axis=(2, 3)) @ gate_w.T
    np.testing.assert_allclose(values["gate_score"], expected, rtol=1e-5, atol=1e-6)


def test_per_channel_scales():
    weights = np.zeros((3, 2, 2, 2), np.float32)
    weights[0, 1, 1, 0] = -2.54
    weights[2] = 0.127
    scales = quantize_weight_per_channel(weights, axis=0)
    assert scales.dtype == np.float32 and scales.shape == (3,)
    np.testing.assert_array_equal(scales, np.float32([2.54 / 127, 1.0, 0.127 / 127]))
    assert quantize_weight_per_channel(np.ones((4, 6), np.float32) * 127, axis=1).shape == (6,)
    assert quantize_weight_per_channel(np.ones((4, 6), np.float32), axis=-1).shape == (6,)


def test_weight_axis_rules():
    assert weight_axis(gs.Node("Conv")) == 0
    assert weight_axis(gs.Node("Gemm", attrs={"transB": 1})) == 0
    assert weight_axis(gs.Node("Gemm")) == 1
    with pytest.raises(CosineGateError, match="only Conv and Gemm"):
        weight_axis(gs.Node("ConvTranspose"))


def test_old_opset_refused():
    graph = gs.import_onnx(gated_resnet_model(trans_b=1, opset=12))
    with pytest.raises(CosineGateError, match="opset >= 13"):
        insert_activation_qdq(graph, "x", 1.0, "x")


def test_non_constant_weight_refused():
    graph = gs.import_onnx(gated_resnet_model(trans_b=1))
    conv2 = next(node for node in graph.nodes if node.name == "conv2")
    conv2.inputs[1] = gs.Variable("runtime_weight", dtype=np.float32)
    with pytest.raises(CosineGateError, match="no constant weight"):
        insert_weight_qdq(graph, conv2)


def test_bad_activation_arguments_refused():
    graph = gs.import_onnx(gated_resnet_model(trans_b=1))
    conv1 = next(node for node in graph.nodes if node.name == "conv1")
    with pytest.raises(CosineGateError, match="not in the ONNX graph"):
        insert_activation_qdq(graph, "missing", 1.0, "missing")
    with pytest.raises(CosineGateError, match="amax"):
        insert_activation_qdq(graph, "r1", 0.0, "r1")
    with pytest.raises(ValueError, match="do not read"):
        insert_activation_qdq(graph, "r1", 1.0, "r1", consumers=[conv1])
    insert_activation_qdq(graph, "x", 1.0, "x")
    with pytest.raises(ValueError, match="already exists"):
        insert_activation_qdq(graph, "r1", 1.0, "x")
