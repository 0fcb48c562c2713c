"""The flat twin: a CosineGateNet as an ONNX graph in which every block runs.

The graph is written node by node from the trained weights (BatchNorm folded into
the convolutions in numpy) instead of through torch.onnx.export, for two reasons:

- stable, readable names (``block3/conv1``, ``block3/gate/logit``, ``block3/out``)
  that the INT8 work keys Q/DQ insertion and TensorRT calibration caches on;
  the exporter's names change with torch versions and module paths;
- "conditionalize last": every graph pass (folding, quantization) runs on this
  flat graph, and each dynamic block is wrapped into its ``If`` only at the end.
  A ``torch.cond`` export puts the ``If`` in from the start; under ONNX Runtime
  that loses the NCHWc layout optimization across each ``If`` boundary
  (ResNet-20, batch 1, 1 thread: 1.45 ms conditional vs 0.62 ms dense).

Every gated block computes its gate head from the block input and reports the
decision in ``gates`` [N, blocks] (1 = the gate says run); in this twin the
residual branch runs regardless. Anchor names that later passes rely on (keep
them when inserting nodes): ``block{i}/add`` (inputs: shortcut, residual),
``block{i}/out``, ``block{i}/gate/decision`` (bool [N, 1]) and
``block{i}/gate/value`` (float [N, 1]).
"""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from cosinegate.errors import CosineGateError
from cosinegate.graphmeta import GATES, INPUT, LOGITS, get_metadata, set_metadata  # noqa: F401 (re-exported)
from cosinegate.macs import gate_hidden_of

DEFAULT_OPSET = 17  # highest opset TensorRT 8.5 and 8.6 (JetPack 5, 6.0) parse; each target profile's max_onnx_opset says more
MIN_OPSET = 13  # Slice/ReduceSum/Pad with tensor inputs, Q/DQ with `axis`
FORMAT = "cosinegate-onnx-v1"
GATE_RULES = {"predictive": "logit > 0", "paper": "sigmoid(logit) > 0.42"}


def block_input(index):
    return "stem/out" if index == 0 else f"block{index - 1}/out"


def block_names(index):
    """Anchor tensor and node names of block `index`."""
    p = f"block{index}"
    return {
        "prefix": p + "/",
        "input": block_input(index),
        "shortcut": f"{p}/shortcut",
        "add": f"{p}/add",
        "out": f"{p}/out",
        "logit": f"{p}/gate/logit",
        "decision": f"{p}/gate/decision",
        "value": f"{p}/gate/value",
        "fixed": f"{p}/gate/fixed",
        "gates_concat": "gates/concat",
    }


def check_opset(opset):
    top = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= int(opset) <= top:
        raise CosineGateError(
            f"opset {opset} is not supported: use {MIN_OPSET}..{top} (default {DEFAULT_OPSET}: "
            "TensorRT 8.5/8.6 parse up to 17; a target profile's max_onnx_opset names its release's limit)."
        )
    return int(opset)


def fold_batchnorm(weight, bn):
    """Conv weight [O, I, k, k] and its BatchNorm -> (folded weight, bias), float32."""
    w = weight.detach().double().numpy()
    scale = bn.weight.detach().double().numpy() / np.sqrt(bn.running_var.detach().double().numpy() + bn.eps)
    bias = bn.bias.detach().double().numpy() - bn.running_mean.detach().double().numpy() * scale
    return (w * scale[:, None, None, None]).astype(np.float32), bias.astype(np.float32)


def _array(t):
    return t.detach().float().numpy().astype(np.float32)


class GraphBuilder:
    """Collects nodes and initializers; each node's output tensor carries the node's name."""

    def __init__(self):
        self.nodes, self.initializers = [], []

    def const(self, name, value):
        self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op, name, inputs, output=None, **attrs):
        output = output or name
        self.nodes.append(helper.make_node(op, inputs, [output], name=name, **attrs))
        return output

    def conv(self, name, x, weight, bias, stride=1, output=None):
        k = weight.shape[-1]
        return self.node(
            "Conv", name, [x, self.const(f"{name}/weight", weight), self.const(f"{name}/bias", bias)], output,
            kernel_shape=[k, k], strides=[stride, stride], pads=[k // 2] * 4,
        )

    def conv_bn(self, name, x, conv, bn, output=None):
        """A torch Conv2d + BatchNorm2d pair as one Conv with the BatchNorm folded in."""
        return self.conv(name, x, *fold_batchnorm(conv.weight, bn), conv.stride[0], output)

    def gemm(self, name, x, linear):
        """A gate head's linear layer as MatMul ``{name}/matmul`` + Add ``{name}``, not one Gemm: TensorRT's parser
        names only the Gemm's MatrixMultiply layer and leaves its bias sum unnamed, out of reach of the FP32 pins
        (onnx-tensorrt builtin_op_importers.cpp Gemm, 8.5-GA l.1609-1643; tests/trt/test_onnx_parser.py)."""
        w, b = np.ascontiguousarray(_array(linear.weight).T), _array(linear.bias)
        product = self.node("MatMul", f"{name}/matmul", [x, self.const(f"{name}/weight", w)])
        return self.node("Add", name, [product, self.const(f"{name}/bias", b)])


def build_flat_graph(model, batch=1, opset=DEFAULT_OPSET):
    """The flat twin of an eval-mode CosineGateNet as an unchecked onnx.ModelProto."""
    opset = check_opset(opset)
    if batch < 1:
        raise CosineGateError(f"--batch must be at least 1, got {batch}.")
    spec, g = model.spec, GraphBuilder()
    x = _stem(g, model)
    gate_values, blocks = [], []
    for index, block in enumerate(model.blocks):
        x, value, kind = _block(g, index, block, model.mode, batch)
        gate_values.append(value)
        blocks.append({"kind": kind, "post": "relu" if block.relu_after_add else "none"})
    pooled = g.node("Flatten", "head/flatten", [g.node("GlobalAveragePool", "head/pool", [x])], axis=1)
    g.node("Gemm", "head/fc", [pooled, g.const("head/fc/weight", _array(model.fc.weight)),
                               g.const("head/fc/bias", _array(model.fc.bias))], LOGITS, transB=1)
    g.node("Concat", "gates/concat", gate_values, GATES, axis=1)
    size = spec.image_size
    graph = helper.make_graph(
        g.nodes, f"cosinegate_{model.backbone}_{model.mode}",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, [batch, spec.in_channels, size, size])],
        [helper.make_tensor_value_info(LOGITS, TensorProto.FLOAT, [batch, model.num_classes]),
         helper.make_tensor_value_info(GATES, TensorProto.FLOAT, [batch, len(model.blocks)])],
        g.initializers,
    )
    opsets = [helper.make_opsetid("", opset)]
    onnx_model = helper.make_model(graph, opset_imports=opsets, producer_name="cosinegate")
    # the lowest IR version for the opset (IR 8 for opset 17): older parsers (TensorRT 8.5) refuse newer IR
    onnx_model.ir_version = helper.find_min_ir_version_for(opsets)
    set_metadata(onnx_model, format=FORMAT, form="flat", policy="none", mode=model.mode, backbone=model.backbone,
                 blocks=blocks, batch=batch, image_size=size, normalization=model.normalization,
                 gate_hidden=gate_hidden_of(model))
    return onnx_model


def _stem(g, model):
    """stem/conv (+BN) -> stem/relu [-> stem/pool, 3x3 stride-2 max-pool]; output `stem/out`."""
    pooled = model.spec.stem == "imagenet"
    x = g.conv_bn("stem/conv", INPUT, model.stem[0], model.stem[1])
    x = g.node("Relu", "stem/relu", [x], None if pooled else "stem/out")
    if pooled:
        x = g.node("MaxPool", "stem/pool", [x], "stem/out", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    return x


def _residual(g, index, residual, x):
    """F(x) as block{i}/conv1, block{i}/relu1, block{i}/conv2 (..., conv3 for bottlenecks); return F's tensor."""
    import torch  # here, not at the top: conditionalize and the device side import this module without torch

    pairs = [(m, residual[i + 1]) for i, m in enumerate(residual) if isinstance(m, torch.nn.Conv2d)]
    for k, (conv, bn) in enumerate(pairs, 1):
        x = g.conv_bn(f"block{index}/conv{k}", x, conv, bn)
        if k < len(pairs):
            x = g.node("Relu", f"block{index}/relu{k}", [x])
    return x


def _block(g, index, block, mode, batch):
    """Emit block `index`; return (output tensor, gates column tensor, kind)."""
    n = block_names(index)
    x = n["input"]
    s = _shortcut(g, index, block, x)
    if block.dropped:
        _post(g, index, block, s, n["out"])
        return n["out"], g.const(n["fixed"], np.zeros((batch, 1), np.float32)), "dropped"
    f = _residual(g, index, block.residual, x)
    if block.gate is None:
        value, kind = g.const(n["fixed"], np.ones((batch, 1), np.float32)), "dense"
    else:
        logit = _predictive_logit(g, index, block.gate, x) if mode == "predictive" else _paper_logit(g, index, block.gate, x, s, f)
        decision = _decide(g, index, block.gate, logit, mode)
        value, kind = g.node("Cast", n["value"], [decision], to=TensorProto.FLOAT), "gated"
    _post(g, index, block, g.node("Add", n["add"], [s, f]), n["out"])
    return n["out"], value, kind


def _post(g, index, block, y, out):
    if block.relu_after_add:
        g.node("Relu", f"block{index}/relu", [y], out)
    else:
        g.node("Identity", f"block{index}/identity", [y], out)


def _shortcut(g, index, block, x):
    import torch

    spec = block.spec
    if not spec.changes_shape:
        return x
    name = f"block{index}/shortcut"
    if isinstance(block.shortcut, torch.nn.Sequential):  # option B: 1x1 projection + BN
        return g.conv_bn(f"{name}/conv", x, block.shortcut[0], block.shortcut[1], output=name)
    sub = x
    if block.shortcut.stride > 1:
        big = np.iinfo(np.int64).max
        sub = g.node("Slice", f"{name}/slice", [
            x, g.const(f"{name}/slice/starts", np.array([0, 0], np.int64)), g.const(f"{name}/slice/ends", np.array([big, big], np.int64)),
            g.const(f"{name}/slice/axes", np.array([2, 3], np.int64)), g.const(f"{name}/slice/steps", np.array([spec.stride] * 2, np.int64)),
        ])
    pad = block.shortcut.pad
    return g.node("Pad", f"{name}/pad", [sub, g.const(f"{name}/pad/pads", np.array([0, pad, 0, 0, 0, pad, 0, 0], np.int64))],
                  output=name, mode="constant")


def _pooled(g, index, x):
    return g.node("Flatten", f"block{index}/gate/flatten", [g.node("GlobalAveragePool", f"block{index}/gate/pool", [x])], axis=1)


def _predictive_logit(g, index, gate, x):
    """logit = softplus(a) * (softplus(cir_head(h)) - t) + control_head(h), h = ReLU(W1 avgpool(x))."""
    p = f"block{index}/gate"
    h = g.node("Relu", f"{p}/relu", [g.gemm(f"{p}/fc", _pooled(g, index, x), gate.hidden)])
    cir = g.node("Softplus", f"{p}/cir", [g.gemm(f"{p}/cir_fc", h, gate.cir_head)])
    offset = g.const(f"{p}/cir_offset", _array(gate.cir_offset))
    from torch.nn import functional as F

    slope = g.const(f"{p}/cir_slope", _array(F.softplus(gate.cir_slope)))
    scaled = g.node("Mul", f"{p}/cir_scaled", [g.node("Sub", f"{p}/cir_centered", [cir, offset]), slope])
    return g.node("Add", f"{p}/logit", [scaled, g.gemm(f"{p}/control", h, gate.control_head)])


def _paper_logit(g, index, gate, x, s, f):
    """logit = alpha * (CIR(s, f) + MLP(avgpool(x))); CIR = 1 - cos(vec s, vec f)."""
    p = f"block{index}/gate"
    h = _pooled(g, index, x)
    for i, layer in ((1, 0), (2, 2)):
        h = g.node("Relu", f"{p}/relu{i}", [g.gemm(f"{p}/fc{i}", h, gate.controller[layer])])
    control = g.gemm(f"{p}/fc3", h, gate.controller[4])
    axes = g.const(f"{p}/cir/axes", np.array([1], np.int64))
    eps = g.const(f"{p}/cir/eps", np.array(1e-8, np.float32))
    vs = g.node("Flatten", f"{p}/cir/flat_shortcut", [s], axis=1)
    vf = g.node("Flatten", f"{p}/cir/flat_residual", [f], axis=1)

    def norm(v, tag):
        sq = g.node("ReduceSum", f"{p}/cir/{tag}_sq", [g.node("Mul", f"{p}/cir/{tag}_sq_elem", [v, v]), axes], keepdims=1)
        return g.node("Max", f"{p}/cir/{tag}_norm", [g.node("Sqrt", f"{p}/cir/{tag}_sqrt", [sq]), eps])

    dot = g.node("ReduceSum", f"{p}/cir/dot", [g.node("Mul", f"{p}/cir/dot_elem", [vs, vf]), axes], keepdims=1)
    denom = g.node("Mul", f"{p}/cir/denom", [norm(vs, "shortcut"), norm(vf, "residual")])
    cos = g.node("Div", f"{p}/cir/cos", [dot, denom])
    cir = g.node("Sub", f"{p}/cir", [g.const(f"{p}/cir/one", np.array(1.0, np.float32)), cos])
    alpha = g.const(f"{p}/alpha", _array(gate.alpha))
    return g.node("Mul", f"{p}/logit", [g.node("Add", f"{p}/logit_sum", [cir, control]), alpha])


def _decide(g, index, gate, logit, mode):
    n = block_names(index)
    if mode == "paper":
        prob = g.node("Sigmoid", f"block{index}/gate/prob", [logit])
        threshold = g.const(f"block{index}/gate/threshold", np.array(gate.threshold, np.float32))
        return g.node("Greater", n["decision"], [prob, threshold])
    return g.node("Greater", n["decision"], [logit, g.const(f"block{index}/gate/zero", np.array(0.0, np.float32))])
