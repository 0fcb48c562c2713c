"""Explicit-quantization Q/DQ insertion on onnx-graphsurgeon graphs, TensorRT style.

TensorRT's rules: symmetric INT8 with zero point 0 (the parser asserts
"TRT only supports symmetric quantization - zeroPt must be all zeros",
onnx/tensorflow-onnx#1713), per-tensor activation scales, per-channel weight
scales on the output-channel axis, scale = amax / 127.

Weights stay an FP32 initializer followed by QuantizeLinear -> DequantizeLinear,
not folded into an INT8 initializer + DequantizeLinear: the TensorRT
explicit-quantization docs accept high-precision weights with a Q layer ("TensorRT
quantizes high-precision weights using the IQuantizeLayer scale"), it is the
pattern NVIDIA's pytorch-quantization exports, and TensorRT 8.0-8.2 parsers reject
INT8 initializers ("invalid weights type of Int8", megvii-research/Sparsebit#16).
Pre-quantized INT8 weights + DQ are documented for current TensorRT only.
"""

import math

import numpy as np
import onnx_graphsurgeon as gs

from cosinegate.errors import CosineGateError

INT8_MAX = 127.0
MIN_OPSET = 13  # first opset with the `axis` attribute on QuantizeLinear/DequantizeLinear


def quantize_weight_per_channel(weights, axis):
    """float32 scales max|w| / 127, one per slice along `axis`.

    An all-zero channel gets scale 1.0: any positive scale represents it exactly,
    and TensorRT needs scales > 0.
    """
    values = np.asarray(weights, dtype=np.float32)
    axis = axis % values.ndim
    other_axes = tuple(i for i in range(values.ndim) if i != axis)
    amax = np.abs(values).max(axis=other_axes) if other_axes else np.abs(values)
    if not np.all(np.isfinite(amax)):
        raise CosineGateError("weights contain NaN or Inf; fix the FP32 model before quantizing.")
    scales = (amax.astype(np.float64) / INT8_MAX).astype(np.float32)
    return np.where(scales > 0, scales, np.float32(1.0)).astype(np.float32)


def weight_axis(node):
    """Output-channel axis of the weight (input 1) of a Conv or Gemm node."""
    if node.op == "Conv":
        return 0  # weight is [M, C/group, k...]
    if node.op == "Gemm":
        return 0 if node.attrs.get("transB", 0) else 1  # B is [N, K] with transB=1, else [K, N]
    raise CosineGateError(
        f"cannot quantize weights of {node.op} node {node.name!r}; only Conv and Gemm are supported."
    )


def insert_weight_qdq(graph, node, name_prefix=None):
    """Feed `node`'s constant weight through per-channel Q -> DQ; return the scales.

    Only this node reads the new DQ output; other readers of the weight keep FP32.
    """
    _check_opset(graph)
    axis = weight_axis(node)
    weight = node.inputs[1] if len(node.inputs) > 1 else None
    if not isinstance(weight, gs.Constant):
        raise CosineGateError(
            f"{node.op} node {node.name!r} has no constant weight input; fold constants "
            "(e.g. `polygraphy surgeon sanitize --fold-constants`) before quantizing."
        )
    scales = quantize_weight_per_channel(weight.values, axis)
    prefix = name_prefix or f"{node.name or weight.name}_weight"
    _insert_qdq(
        graph,
        weight,
        gs.Constant(f"{prefix}_scale", scales),
        gs.Constant(f"{prefix}_zero_point", np.zeros(scales.shape, dtype=np.int8)),
        axis,
        prefix,
        [node],
    )
    return scales


def insert_activation_qdq(graph, tensor, amax, name_prefix, consumers=None):
    """Insert per-tensor Q -> DQ (scale amax/127) in front of `consumers`.

    `tensor` is a gs.Variable or its name; `consumers` defaults to every node
    reading it. Readers left out (e.g. a gate head) keep reading the FP32
    original. Returns the DQ output.
    """
    _check_opset(graph)
    if isinstance(tensor, str):
        tensor = _find_tensor(graph, tensor)
    if not (math.isfinite(amax) and amax > 0.0):
        raise CosineGateError(
            f"tensor {tensor.name!r} has amax {amax}; an INT8 scale needs a finite amax > 0, recalibrate."
        )
    targets = list(tensor.outputs) if consumers is None else list(consumers)
    if not targets:
        raise ValueError(f"tensor {tensor.name!r} has no consumers to quantize for")
    strangers = [node.name for node in targets if not any(t is tensor for t in node.inputs)]
    if strangers:
        raise ValueError(f"nodes {strangers} do not read tensor {tensor.name!r}")
    return _insert_qdq(
        graph,
        tensor,
        gs.Constant(f"{name_prefix}_scale", np.array(amax / INT8_MAX, dtype=np.float32)),
        gs.Constant(f"{name_prefix}_zero_point", np.array(0, dtype=np.int8)),
        None,
        name_prefix,
        targets,
    )


def _insert_qdq(graph, tensor, scale, zero_point, axis, prefix, consumers):
    """Q -> DQ on `tensor`, rewired into `consumers`, placed before the first of them."""
    taken = graph.tensors()
    for name in (scale.name, zero_point.name, f"{prefix}_quantized", f"{prefix}_dequantized"):
        if name in taken:
            raise ValueError(f"tensor name {name!r} already exists; pass another name_prefix")
    attrs = {} if axis is None else {"axis": axis}
    quantized = gs.Variable(f"{prefix}_quantized", dtype=np.int8, shape=tensor.shape)
    dequantized = gs.Variable(f"{prefix}_dequantized", dtype=np.float32, shape=tensor.shape)
    quantize = gs.Node(
        "QuantizeLinear", f"{prefix}_QuantizeLinear", attrs=dict(attrs),
        inputs=[tensor, scale, zero_point], outputs=[quantized],
    )
    dequantize = gs.Node(
        "DequantizeLinear", f"{prefix}_DequantizeLinear", attrs=dict(attrs),
        inputs=[quantized, scale, zero_point], outputs=[dequantized],
    )
    first = min(i for i, node in enumerate(graph.nodes) if any(node is c for c in consumers))
    for consumer in consumers:
        for index, current in enumerate(consumer.inputs):
            if current is tensor:
                consumer.inputs[index] = dequantized
    # The producer of `tensor` precedes every consumer, so this keeps topological order.
    graph.nodes[first:first] = [quantize, dequantize]
    return dequantized


def _check_opset(graph):
    if graph.opset < MIN_OPSET:
        raise CosineGateError(
            f"the ONNX model uses opset {graph.opset}; per-channel Q/DQ needs opset >= {MIN_OPSET}. "
            f"Re-export the model with opset {MIN_OPSET} or newer."
        )


def _find_tensor(graph, name):
    tensor = graph.tensors().get(name)
    if tensor is None:
        raise CosineGateError(f"tensor {name!r} is not in the ONNX graph; check the tensor name against the model.")
    return tensor
