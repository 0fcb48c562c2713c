"""ImageNet-style gated ResNets (resnet18/34/50): layout, analytic MACs vs published figures and
forward hooks, skipping, and the ONNX path (If wrapping, masked form, gate-head FP32 pin) for
bottleneck blocks. Export checks run at 32x32 to stay fast."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from cosinegate.errors import CosineGateError
from cosinegate.macs import mac_table, model_mac_table
from cosinegate.models import CosineGateNet
from cosinegate.models.backbones import backbone_spec
from test_macs import hooked_macs

PUBLISHED_GMACS = {"resnet18": 1.82, "resnet34": 3.67, "resnet50": 4.09}  # torchvision's GFLOPS (= multiply-adds) at 224


@pytest.mark.parametrize("backbone", sorted(PUBLISHED_GMACS))
def test_dense_macs_at_224_match_published_figures(backbone):
    dense = mac_table(backbone, "none", num_classes=1000, image_size=224).dense
    assert abs(dense / 1e9 / PUBLISHED_GMACS[backbone] - 1) < 0.01, dense


@pytest.mark.parametrize("backbone,size", [("resnet18", 224), ("resnet34", 64), ("resnet50", 224), ("resnet50", 57), ("resnet18", 45)])
def test_analytic_macs_match_forward_hooks(backbone, size):
    """Every conv and linear layer counted by hooks equals the analytic table, per block (odd sizes: ceil rounding)."""
    model = CosineGateNet(backbone, "none", num_classes=1000, image_size=size)
    counts = hooked_macs(model, torch.randn(1, 3, size, size))
    table = mac_table(backbone, "none", num_classes=1000, image_size=size)
    assert sum(counts.values()) == table.dense
    assert counts["stem.0"] == table.stem and counts["fc"] == table.classifier
    for i, block in enumerate(table.blocks):
        residual = sum(v for k, v in counts.items() if k.startswith(f"blocks.{i}.residual."))
        shortcut = sum(v for k, v in counts.items() if k.startswith(f"blocks.{i}.shortcut."))
        assert (residual, shortcut) == (block.residual, block.shortcut), i


def test_layouts():
    r18, r34, r50 = (backbone_spec(name, 224) for name in ("resnet18", "resnet34", "resnet50"))
    assert [len(s.blocks) for s in (r18, r34, r50)] == [8, 16, 16]
    assert {b.kind for b in r18.blocks} == {"basic"} and {b.kind for b in r50.blocks} == {"bottleneck"}
    # four stages at 56, 28, 14, 7 after the stride-2 stem and max-pool
    assert sorted({b.out_size for b in r50.blocks}, reverse=True) == [56, 28, 14, 7]
    assert [b.out_channels for b in r50.blocks if b.changes_shape] == [256, 512, 1024, 2048]
    assert [b.mid_channels for b in r50.blocks if b.changes_shape] == [64, 128, 256, 512]
    assert [b.index for b in r34.blocks if b.changes_shape] == [3, 7, 13]  # first block of stages 2-4
    assert [b.index for b in r50.blocks if b.changes_shape] == [0, 3, 7, 13]  # and stage 1's 64 -> 256
    model = CosineGateNet("resnet50", "predictive", image_size=64)
    assert isinstance(model.stem[0], nn.Conv2d) and model.stem[0].kernel_size == (7, 7) and model.stem[0].stride == (2, 2)
    assert isinstance(model.stem[3], nn.MaxPool2d)
    assert all(block.gate is not None for block in model.blocks)  # every residual block gateable
    projections = [i for i, block in enumerate(model.blocks) if isinstance(block.shortcut, nn.Sequential)]
    assert projections == [0, 3, 7, 13] and isinstance(model.blocks[0].shortcut[0], nn.Conv2d)
    assert model.blocks[0].shortcut[0].kernel_size == (1, 1)


def test_image_size_must_be_usable():
    with pytest.raises(CosineGateError, match="--image-size 4 is too small"):
        backbone_spec("resnet18", 4)
    assert backbone_spec("resnet18").image_size == 224 and backbone_spec("resnet20").image_size == 32


def _set_gates(model, pattern):
    """Force each predictive gate open (1) or shut (0) by its control bias."""
    with torch.no_grad():
        for block, on in zip(model.blocks, pattern):
            block.gate.control_head.bias.fill_(100.0 if on else -100.0)


def _randomize_bn(model, seed=0):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.num_features, generator=generator) * 0.2 - 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=generator) * 0.5 + 0.5)
    return model.eval()


PATTERN = [1, 0, 1, 1, 0, 1, 0, 1, 1, 0, 1, 1, 0, 1, 1, 0]  # skips some bottlenecks, projection blocks included


def test_a_skipped_bottleneck_is_its_projection_shortcut():
    model = _randomize_bn(CosineGateNet("resnet50", "predictive", image_size=64))
    _set_gates(model, [0] * 16)
    block = model.blocks[3]  # stride 2, 256 -> 512: projection shortcut
    x = torch.relu(torch.randn(2, 256, 16, 16))
    with torch.no_grad():
        y, stats = block(x)
        expected = torch.relu(block.shortcut(x))
    assert stats["gates"].tolist() == [0.0, 0.0]
    assert torch.allclose(y, expected)
    table = model_mac_table(model)
    skipped = table.executed([False] * 16)
    assert skipped == table.stem + table.classifier + sum(b.shortcut + b.gate for b in table.blocks)


@pytest.fixture(scope="module")
def resnet50_graphs():
    from cosinegate.onnx import build_flat_graph, conditionalize, mask, optimize_flat

    torch.manual_seed(0)
    model = _randomize_bn(CosineGateNet("resnet50", "predictive", num_classes=3, image_size=32))
    _set_gates(model, PATTERN)
    flat = optimize_flat(build_flat_graph(model, 1))
    return model, flat, conditionalize(flat, "conditional-all", None), mask(optimize_flat(build_flat_graph(model, 2)), "conditional-all", None)


def _run(graph, x):
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(["logits", "gates"], {"input": x})


def test_bottleneck_conditional_and_masked_graphs_match_pytorch(resnet50_graphs):
    model, _, conditional, masked = resnet50_graphs
    ifs = [n for n in conditional.graph.node if n.op_type == "If"]
    assert len(ifs) == 16
    for node in ifs:
        block = node.name.split("/")[0]
        then = {n.name for n in {a.name: a.g for a in node.attribute}["then_branch"].node}
        assert {f"{block}/conv1", f"{block}/conv2", f"{block}/conv3", f"{block}/add"} <= then
    top = {n.name for n in conditional.graph.node}
    assert {"stem/conv", "stem/pool", "block3/shortcut/conv"} <= top  # the projection stays outside the If
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        logits, stats = model(x)
    assert stats.gates[0].tolist() == [float(p) for p in PATTERN]
    for i in range(2):
        out_logits, out_gates = _run(conditional, x[i : i + 1].numpy())
        assert np.array_equal(out_gates[0], stats.gates[i].numpy())
        assert np.allclose(out_logits, logits[i : i + 1].numpy(), atol=1e-4, rtol=1e-3)
    out_logits, out_gates = _run(masked, x.numpy())
    assert np.array_equal(out_gates, stats.gates.numpy())
    assert np.allclose(out_logits, logits.numpy(), atol=1e-4, rtol=1e-3)


def test_bottleneck_gate_heads_stay_fp32_and_qdq_moves_into_the_ifs(resnet50_graphs, tmp_path):
    from cosinegate.onnx import conditionalize
    from cosinegate.quant import calibrate as C
    from cosinegate.trt.build import gate_layer_names

    model, flat, _, _ = resnet50_graphs
    images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    amax = C.collect_ranges(model, images, "minmax", batch_size=4, tensors=C.quantized_tensors(flat))
    qdq = C.quantize_flat(flat, amax)
    made_by = {o: n for n in qdq.graph.node for o in n.output}
    gate_nodes = [n for n in qdq.graph.node if C.is_gate_node(n.name)]
    assert {n.name.split("/")[0] for n in gate_nodes} == {f"block{i}" for i in range(16)} | {"gates"}
    for node in gate_nodes:  # the gate heads read FP32 only
        assert all(made_by.get(i) is None or made_by[i].op_type not in ("QuantizeLinear", "DequantizeLinear") for i in node.input)
    conv3 = next(n for n in qdq.graph.node if n.name == "block5/conv3")
    assert made_by[conv3.input[0]].op_type == "DequantizeLinear"
    conditional = conditionalize(qdq, "conditional-all", None)
    for node in (n for n in conditional.graph.node if n.op_type == "If"):
        block = node.name.split("/")[0]
        inside = {n.name for n in {a.name: a.g for a in node.attribute}["then_branch"].node}
        assert {f"{block}/conv3/input_q_QuantizeLinear", f"{block}/conv3/weight_q_DequantizeLinear"} <= inside
    onnx.save(conditional, str(tmp_path / "qdq.onnx"))
    pinned = gate_layer_names(tmp_path / "qdq.onnx")
    assert {f"block{i}/gate/logit" for i in range(16)} <= set(pinned)  # TensorRT pins every block's gate head
    assert not [name for name in pinned if name.endswith(("/gate/decision", "/gate/value", "/gate/cond"))]  # bool: not pinnable

