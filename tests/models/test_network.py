"""Backbones and the three gate modes (paper, predictive, none), drop_blocks."""

import pytest
import torch
from torch.nn import functional as F

from cosinegate.errors import CosineGateError
from cosinegate.models import BACKBONES, CosineGateNet, backbone_spec
from cosinegate.models.gates import PaperGate, PredictiveGate, cosine_incongruity


def _x(n=4, c=3, size=32, seed=0):
    return torch.randn(n, c, size, size, generator=torch.Generator().manual_seed(seed))


# ---- backbones -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name, blocks", [("resnet20", 9), ("resnet32", 15), ("resnet44", 21), ("resnet56", 27), ("resnet110", 54)])
def test_cifar_resnets(name, blocks):
    spec = backbone_spec(name)
    assert len(spec.blocks) == blocks
    assert spec.shortcut == "A" and spec.relu_after_add and spec.stem_channels == 16
    n = blocks // 3
    assert [b.out_channels for b in spec.blocks] == [16] * n + [32] * n + [64] * n
    assert [b.stride for b in spec.blocks] == ([1] * n) + ([2] + [1] * (n - 1)) * 2
    assert spec.blocks[-1].out_size == 8


def test_paper8_backbone():
    spec = backbone_spec("paper8")
    assert [b.out_channels for b in spec.blocks] == [32, 32, 64, 64, 128, 128, 256, 256]
    # stride-2 blocks are 3, 5 and 7 (1-based)
    assert [i + 1 for i, b in enumerate(spec.blocks) if b.stride == 2] == [3, 5, 7]
    assert spec.shortcut == "B" and not spec.relu_after_add
    model = CosineGateNet("paper8", "paper").eval()
    out, stats = model(_x(2))
    assert out.shape == (2, 10) and stats.gates.shape == (2, 8)
    # no ReLU after the add: a paper8 block output can be negative
    y, _ = model.blocks[0](torch.randn(2, 32, 32, 32))
    assert (y < 0).any()


def test_unknown_backbone_and_mode():
    with pytest.raises(CosineGateError, match="unknown backbone 'resnet99'.*resnet20"):
        CosineGateNet("resnet99")
    with pytest.raises(CosineGateError, match="unknown gate mode 'fast'.*predictive"):
        CosineGateNet("resnet20", "fast")
    assert set(BACKBONES) == {"resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "paper8", "resnet18", "resnet34", "resnet50"}


def test_stem_and_classifier_never_gated():
    model = CosineGateNet("resnet20", "predictive")
    gated = [name for name, m in model.named_modules() if isinstance(m, PredictiveGate)]
    assert len(gated) == 9 and all(name.startswith("blocks.") for name in gated)
    assert not any(isinstance(m, (PredictiveGate, PaperGate)) for m in list(model.stem.modules()) + [model.fc])


# ---- predictive mode -----------------------------------------------------------------------------


def _forbid_residual(block):
    def boom(*args, **kwargs):
        raise AssertionError("F(x) was computed although the gate is closed")

    block.residual.forward = boom


def test_predictive_decides_without_computing_F():
    torch.manual_seed(0)
    block = CosineGateNet("resnet20", "predictive").blocks[3].eval()  # stride-2 block: option-A shortcut
    x = torch.relu(torch.randn(4, 16, 32, 32))
    torch.nn.init.constant_(block.gate.control_head.bias, -100.0)  # gate closed for every sample
    _forbid_residual(block)
    y, stats = block(x)
    assert torch.equal(y, block.post(block.shortcut(x)))
    assert stats["gates"].sum() == 0 and (stats["probs"] < 0.5).all()


def test_predictive_runs_F_only_for_open_samples():
    torch.manual_seed(0)
    block = CosineGateNet("resnet20", "predictive").blocks[1].eval()
    x = torch.relu(torch.randn(6, 16, 32, 32))
    seen = []
    original = block.residual.forward

    def spy(inp):
        seen.append(inp.shape[0])
        return original(inp)

    block.residual.forward = spy
    # logit = relu(1 + mean of channel 0) - 1 - eps: open iff channel 0's mean is positive
    with torch.no_grad():
        block.gate.control_head.weight.zero_()
        block.gate.control_head.bias.fill_(0.0)
        block.gate.cir_slope.fill_(-50.0)  # softplus(-50) ~ 0: ignore the CIR term
        block.gate.hidden.weight.zero_()
        block.gate.hidden.bias.fill_(1.0)
        block.gate.hidden.weight[0, 0] = 1.0
        block.gate.control_head.weight[0, 0] = 1.0
        block.gate.control_head.bias.fill_(-1.0 - 1e-3)  # logit = relu(1 + mean_c0) - 1 - eps > 0  iff mean_c0 > eps
    x[1::2, 0] = 0.0  # channel 0 mean 0 -> closed
    x[0::2, 0] = 1.0  # channel 0 mean 1 -> open
    dense = block.post(block.shortcut(x) + block.residual(x))
    seen.clear()
    y, stats = block(x)
    assert stats["gates"].tolist() == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]
    assert seen == [3], "F(x) must run on the open samples only"
    assert torch.allclose(y[0::2], dense[0::2], atol=1e-5)
    assert torch.equal(y[1::2], block.post(block.shortcut(x))[1::2])


def test_predictive_open_gate_matches_dense_block():
    torch.manual_seed(0)
    block = CosineGateNet("resnet20", "predictive").blocks[0].eval()
    x = torch.relu(torch.randn(3, 16, 32, 32))
    y, stats = block(x)  # open_bias 3.0: every gate starts open
    assert stats["gates"].tolist() == [1.0, 1.0, 1.0]
    assert torch.allclose(y, block.post(block.shortcut(x) + block.residual(x)), atol=1e-6)


def test_predictive_inference_threshold_is_half():
    gate = PredictiveGate(16)
    assert gate.threshold == 0.5
    logits = torch.tensor([-1e-4, 0.0, 1e-4])
    assert PredictiveGate.decide(logits).tolist() == [False, False, True]


def test_straight_through_hard_forward_soft_gradient():
    torch.manual_seed(0)
    gate = PredictiveGate(16)
    gate.temperature = 0.5
    x = torch.randn(64, 16, 8, 8)
    logit, _ = gate(x)
    g = gate.train_gate(logit)
    assert set(g.unique().tolist()) <= {0.0, 1.0}
    (g * torch.arange(64.0)).sum().backward()
    assert gate.control_head.bias.grad is not None and gate.control_head.bias.grad.abs() > 0
    assert gate.hidden.weight.grad.abs().sum() > 0


def test_predictive_training_forward_hard_gates_and_gate_gradient():
    torch.manual_seed(0)
    model = CosineGateNet("resnet20", "predictive").train()
    with torch.no_grad():
        for block in model.blocks:
            block.gate.control_head.bias.fill_(0.0)  # gates near 0.5: both decisions occur
    x, y = _x(16), torch.arange(16) % 10
    out, stats = model(x)
    assert set(stats.gates.unique().tolist()) == {0.0, 1.0}
    assert stats.cir_loss.requires_grad and stats.cir_loss > 0
    F.cross_entropy(out, y).backward()
    for block in model.blocks:
        assert block.gate.control_head.bias.grad.abs() > 0, "task loss must reach the gate through straight-through"


def test_predictive_cir_regression_target_is_detached():
    torch.manual_seed(0)
    model = CosineGateNet("resnet20", "predictive").train()
    _, stats = model(_x(4))
    stats.cir_loss.backward()
    # the CIR target is stop-gradient: the regression loss trains the gate's CIR head, not the block's own
    # convs (the last block's F output feeds no later gate, so its convs get no gradient at all)
    last = model.blocks[-1]
    assert last.gate.cir_head.weight.grad.abs().sum() > 0
    assert last.residual[0].weight.grad is None or last.residual[0].weight.grad.abs().sum() == 0


def test_set_temperature():
    model = CosineGateNet("resnet20", "predictive")
    model.set_temperature(0.3, noise_scale=0.5)
    assert all(block.gate.temperature == 0.3 and block.gate.noise_scale == 0.5 for block in model.blocks)


def test_without_noise_training_decisions_are_the_test_time_decisions():
    torch.manual_seed(0)
    gate = PredictiveGate(16)
    with torch.no_grad():
        gate.control_head.bias.fill_(0.0)  # logits near 0: noise would flip many decisions
    logit, _ = gate(torch.randn(256, 16, 8, 8))
    gate.noise_scale = 0.0
    assert torch.equal(gate.train_gate(logit).bool(), PredictiveGate.decide(logit))
    gate.noise_scale = 1.0
    assert not torch.equal(gate.train_gate(logit).bool(), PredictiveGate.decide(logit))


# ---- paper mode ----------------------------------------------------------------------------------


def test_paper_gate_defaults():
    gate = PaperGate(32)
    assert gate.threshold == 0.42 and gate.temperature == 0.6
    assert gate.alpha.item() == pytest.approx(-2.2)
    sizes = [(m.in_features, m.out_features) for m in gate.controller if isinstance(m, torch.nn.Linear)]
    assert sizes == [(32, 64), (64, 32), (32, 1)]
    assert gate.decide(torch.logit(torch.tensor([0.41, 0.43]))).tolist() == [False, True]


def test_paper_gate_needs_F():
    block = CosineGateNet("paper8", "paper").blocks[0].eval()
    with torch.no_grad():
        block.gate.alpha.fill_(100.0)
        block.gate.controller[-1].bias.fill_(-100.0)  # logit hugely negative: gate closed
    x = torch.randn(2, 32, 32, 32)
    y, stats = block(x)
    assert stats["gates"].sum() == 0
    assert torch.allclose(y, block.shortcut(x))
    _forbid_residual(block)
    with pytest.raises(AssertionError, match="F\\(x\\) was computed"):
        block(x)  # paper mode computes F(x) (for CIR) even when the block is then skipped


def test_paper_logit_uses_cir():
    block = CosineGateNet("paper8", "paper").blocks[1].eval()
    x = torch.randn(3, 32, 32, 32)
    s, f = block.shortcut(x), block.residual(x)
    cir = cosine_incongruity(s, f)
    control = block.gate.controller(x.mean(dim=(2, 3))).squeeze(1)
    _, stats = block(x)
    assert torch.allclose(stats["logits"], -2.2 * (cir + control), atol=1e-5)
    assert ((cir >= 0) & (cir <= 2)).all()


def test_paper_training_gates_are_soft_and_consistency_present():
    torch.manual_seed(0)
    model = CosineGateNet("paper8", "paper").train()
    block = model.blocks[0]
    logit = torch.zeros(256)
    g = block.gate.train_gate(logit)
    assert ((g > 0) & (g < 1)).all() and g.std() > 0.1  # soft, noisy, no straight-through
    assert len(set(g.tolist()) - {0.0, 1.0}) == 256
    out, stats = model(_x(4))
    assert stats.consistency.requires_grad and stats.consistency >= 0
    out.sum().backward()
    assert block.gate.alpha.grad is not None and block.gate.alpha.grad != 0


def test_cosine_incongruity():
    a = torch.randn(3, 4, 5, 5)
    assert torch.allclose(cosine_incongruity(a, a), torch.zeros(3), atol=1e-6)
    assert torch.allclose(cosine_incongruity(a, -a), torch.full((3,), 2.0), atol=1e-6)
    assert torch.allclose(cosine_incongruity(a, 3 * a), torch.zeros(3), atol=1e-6)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fast_training_forms_compute_what_the_plain_ops_do(channels_last, dtype):
    """spatial_mean (the gate's pooling in training) and cir_target (its CIR target): the values and gradient of
    x.mean(dim=(2, 3)) and of cosine_incongruity, for NCHW and channels_last, fp32 and bf16; the gradient comes back
    in the input's memory format (the point of it: no slow strided accumulation)."""
    from cosinegate.models.gates import cir_target, spatial_mean

    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(4, 6, 5, 7).to(dtype).contiguous(memory_format=fmt)
    weight = torch.randn(4, 6)
    ours, plain = x.clone().requires_grad_(), x.clone().requires_grad_()
    (spatial_mean(ours) * weight).sum().backward()
    (plain.float().mean(dim=(2, 3)) * weight).sum().backward()
    tol = 1e-6 if dtype == torch.float32 else 1e-2
    assert torch.allclose(spatial_mean(x).float(), x.float().mean(dim=(2, 3)), atol=tol)
    assert torch.allclose(ours.grad.float(), plain.grad.float(), atol=tol) and ours.grad.dtype == dtype
    raw, = torch.autograd.grad(spatial_mean(ours).sum(), ours)  # as the block input's gradient receives it
    assert raw.is_contiguous(memory_format=fmt)
    s, f = x, torch.randn(4, 6, 5, 7).to(dtype).contiguous(memory_format=fmt)
    exact = cosine_incongruity(s.float(), f.float())  # bf16: each product rounds, the sums do not
    assert torch.allclose(cir_target(s, f), exact, atol=1e-5 if dtype == torch.float32 else 1e-3)
    with torch.no_grad():  # inference and export: the plain mean (a custom Function does not export)
        assert spatial_mean(x.requires_grad_()).grad_fn is None


# ---- dense and dropped blocks --------------------------------------------------------------------


def test_dense_mode_is_plain_resnet():
    torch.manual_seed(0)
    model = CosineGateNet("resnet20", "none").eval()
    assert all(block.gate is None for block in model.blocks)
    x = _x(2)
    out, stats = model(x)
    assert stats.gates.shape == (2, 9) and (stats.gates == 1).all() and (stats.probs == 1).all()
    h = model.stem(x)
    for block in model.blocks:
        h = F.relu(block.shortcut(h) + block.residual(h))
    assert torch.allclose(out, model.fc(h.mean(dim=(2, 3))), atol=1e-5)
    assert not any("gate" in name for name, _ in model.named_parameters())


def test_drop_blocks():
    model = CosineGateNet("resnet20", "predictive", drop_blocks=(2, 5)).eval()
    assert model.drop_blocks == (2, 5)
    assert model.blocks[2].residual is None and model.blocks[2].gate is None
    x = torch.relu(torch.randn(2, 16, 32, 32))
    y, _ = model.blocks[2](x)
    assert torch.equal(y, F.relu(x))
    _, stats = model(_x(2))
    assert (stats.gates[:, [2, 5]] == 0).all() and (stats.probs[:, [2, 5]] == 0).all()
    assert (stats.gates[:, [0, 1, 3, 4, 6, 7, 8]] == 1).all()
    with pytest.raises(CosineGateError, match="out of range"):
        CosineGateNet("resnet20", drop_blocks=(9,))
