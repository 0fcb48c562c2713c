"""The ORT-native conditional graph: ONNX Runtime's optimized kernels inside each If (NCHWc where the build has it,
plain FusedConv where it has not, as on ARM), the same function as PyTorch and the portable graph, at batch 1."""

import numpy as np
import onnx
import pytest

from cosinegate.data.augment import to_tensor
from cosinegate.errors import CosineGateError
from cosinegate.onnx import export_checkpoint
from cosinegate.onnx.ort_native import ort_native_conditional
from cosinegate.runtime.onnxruntime_backend import OnnxRuntimeRunner
from cosinegate.training.checkpoint import load_checkpoint

NCHWC = "com.microsoft.nchwc"


def branches(model):
    """{If name: (then nodes, else nodes)} of a conditional graph."""
    return {n.name: tuple(next(a.g.node for a in n.attribute if a.name == side) for side in ("then_branch", "else_branch"))
            for n in model.graph.node if n.op_type == "If"}


def every_node(model):
    out = list(model.graph.node)
    for then, other in branches(model).values():
        out += list(then) + list(other)
    return out


@pytest.mark.parametrize("policy,nchwc", [("auto", True), ("conditional-all", True), ("conditional-all", False)])
def test_ort_native_matches_portable_conditional(policy, nchwc, dyn_checkpoint, test_images, tmp_path):
    import onnxruntime as ort

    export_checkpoint(dyn_checkpoint, tmp_path / "flat.onnx", "flat")
    export_checkpoint(dyn_checkpoint, tmp_path / "cond.onnx", "conditional", policy=policy)
    native = ort_native_conditional(onnx.load(str(tmp_path / "flat.onnx")), policy, load_checkpoint(dyn_checkpoint)["skip_rates"],
                                    nchwc=nchwc)
    onnx.save(native, str(tmp_path / "native.onnx"))
    portable = onnx.load(str(tmp_path / "cond.onnx"))
    ifs = branches(native)
    assert len(ifs) == sum(n.op_type == "If" for n in portable.graph.node) > 0
    then_ops = {(n.domain, n.op_type) for then, _ in ifs.values() for n in then}
    if nchwc:  # the point of the form: blocked-layout (NCHWc) convolutions inside the branches
        assert (NCHWC, "Conv") in then_ops
    else:  # as on ARM builds: no NCHWc node anywhere, ONNX Runtime's fused convolutions in the branches
        assert not any(n.domain == NCHWC for n in every_node(native)) and ("com.microsoft", "FusedConv") in then_ops
    reference = ort.InferenceSession(str(tmp_path / "cond.onnx"), providers=["CPUExecutionProvider"])
    candidate = OnnxRuntimeRunner(tmp_path / "native.onnx").activate().session  # loads it unoptimized, by its metadata
    executed = []
    for i in range(40):
        x = to_tensor(test_images.images[i : i + 1]).numpy()
        (ref_logits, ref_gates), (logits, gates) = reference.run(None, {"input": x}), candidate.run(None, {"input": x})
        np.testing.assert_array_equal(gates, ref_gates)
        np.testing.assert_allclose(logits, ref_logits, atol=1e-4, rtol=1e-3)
        executed.append(gates)
    executed = np.concatenate(executed)
    assert 0 < executed[:, 2:].mean() < 1  # dynamic blocks really took both branches


@pytest.fixture(scope="module")
def resnet18_forced():
    """A ResNet-18 at 64x64 (projection shortcuts in blocks 2, 4 and 6) whose every gate skips half of 12 images."""
    import torch

    from cosinegate.bench.gate_patterns import force_skip_fraction
    from cosinegate.models.network import CosineGateNet
    from cosinegate.onnx import build_flat_graph, optimize_flat

    torch.manual_seed(0)
    model = CosineGateNet("resnet18", image_size=64).eval()
    images = np.random.default_rng(3).integers(0, 256, (12, 64, 64, 3), dtype=np.uint8)
    force_skip_fraction(model, images, 0.5)
    x = to_tensor(images, "cpu", model.normalization)
    with torch.no_grad():
        logits, stats = model(x)
    return optimize_flat(build_flat_graph(model, 1)), x.numpy(), logits.numpy(), stats.gates.numpy()


@pytest.mark.parametrize("nchwc", [True, False])
def test_ort_native_resnet18_projection_blocks(nchwc, resnet18_forced):
    import onnxruntime as ort

    from cosinegate.onnx import conditionalize

    flat, x, torch_logits, torch_gates = resnet18_forced
    assert (torch_gates.mean(0) == 0.5).all()  # forced: every block runs for 6 images and is skipped for the other 6
    native = ort_native_conditional(flat, "conditional-all", nchwc=nchwc)
    ifs = branches(native)
    assert len(ifs) == 8
    for index in (2, 4, 6):  # the add fused into the shortcut convolution: the else-branch is that convolution alone
        then, other = ifs[f"block{index}/ortif"]
        assert [n.op_type for n in other] == ["Conv" if nchwc else "FusedConv"] and len(other[0].input) == 3
        assert sum(n.op_type in ("Conv", "FusedConv") for n in then) == 3 and any(len(n.input) == 4 for n in then)
    for index in (0, 1, 3, 5, 7):
        assert [n.op_type for n in ifs[f"block{index}/ortif"][1]] == ["Identity"]
    assert any(n.domain == NCHWC for n in every_node(native)) == nchwc
    candidate = OnnxRuntimeRunner(native).activate().session
    portable = ort.InferenceSession(conditionalize(flat, "conditional-all").SerializeToString(), providers=["CPUExecutionProvider"])
    scale = max(1.0, float(np.abs(torch_logits).max()))
    for i in range(len(x)):
        logits, gates = candidate.run(None, {"input": x[i : i + 1]})
        ref_logits, ref_gates = portable.run(None, {"input": x[i : i + 1]})
        np.testing.assert_array_equal(gates, torch_gates[i : i + 1])
        np.testing.assert_array_equal(gates, ref_gates)
        np.testing.assert_allclose(logits, torch_logits[i : i + 1], atol=1e-4 * scale, rtol=1e-3)
        np.testing.assert_allclose(logits, ref_logits, atol=1e-5 * scale, rtol=1e-4)


def test_ort_native_refuses_batches(resnet18_forced):
    from cosinegate.onnx.export import set_metadata

    flat = onnx.ModelProto()
    flat.CopyFrom(resnet18_forced[0])
    set_metadata(flat, batch=2)
    with pytest.raises(CosineGateError, match="batch 1"):
        ort_native_conditional(flat)
