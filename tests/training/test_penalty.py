"""The MAC-weighted compute penalty: gradient (normal vs paper_exact), budgets, ramp."""

import copy

import pytest
import torch

from cosinegate.config import DEFAULTS
from cosinegate.macs import mac_table
from cosinegate.models import CosineGateNet
from cosinegate.training import schedules
from cosinegate.training.penalty import compute_penalty, compute_ratio

BLOCK_MACS = [b.residual for b in mac_table("resnet20").blocks]


def gate_cfg(**overrides):
    cfg = copy.deepcopy(DEFAULTS["gate"])
    cfg.update(overrides)
    return cfg


def test_compute_ratio_is_mac_weighted():
    macs = [1.0, 3.0]
    probs = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    assert compute_ratio(probs, macs).tolist() == [0.25, 0.75, 0.5]


def _gated_probs(mode="predictive", backbone="resnet20"):
    torch.manual_seed(0)
    model = CosineGateNet(backbone, mode).train()
    _, stats = model(torch.randn(8, 3, 32, 32))
    return model, stats.probs


def _gate_grads(model):
    return torch.cat([p.grad.flatten() for n, p in model.named_parameters() if ".gate." in n and p.grad is not None])


def test_penalty_gradient_reaches_gates_when_over_budget():
    model, probs = _gated_probs()
    penalty, ratio = compute_penalty(probs, BLOCK_MACS, gate_cfg(target=0.5, budget="batch"), weight=2.5)
    assert ratio > 0.5 and penalty.item() == pytest.approx(2.5 * (ratio.item() - 0.5) ** 2, rel=1e-5)
    penalty.backward()
    grads = _gate_grads(model)
    assert grads.abs().sum() > 0
    # pushes compute down: the open-bias of every gate gets a positive gradient (descent lowers it)
    assert all(block.gate.control_head.bias.grad.item() > 0 for block in model.blocks)
    # the classifier and the last block's F do not feed any gate: the penalty leaves them alone
    assert model.fc.weight.grad is None and model.blocks[-1].residual[3].weight.grad is None


def test_penalty_is_zero_under_budget():
    model, probs = _gated_probs()
    penalty, ratio = compute_penalty(probs, BLOCK_MACS, gate_cfg(target=1.0, budget="batch"), weight=2.5)
    assert ratio < 1.0 and penalty.item() == 0.0


def test_paper_exact_has_same_value_but_no_gradient():
    model, probs = _gated_probs()
    normal, _ = compute_penalty(probs, BLOCK_MACS, gate_cfg(target=0.5, budget="batch"), weight=2.5)
    exact, ratio = compute_penalty(probs, BLOCK_MACS, gate_cfg(target=0.5, budget="batch", paper_exact=True), weight=2.5)
    assert exact.item() == pytest.approx(normal.item()) and exact.item() > 0
    assert not exact.requires_grad  # rebuilt from .item(): the authors' bug, reproduced on purpose
    (exact + 0 * probs.sum()).backward()
    assert (_gate_grads(model) == 0).all()


def test_paper_exact_in_paper_mode():
    model, probs = _gated_probs("paper", "paper8")
    macs = [b.residual for b in mac_table("paper8").blocks]
    exact, ratio = compute_penalty(probs, macs, gate_cfg(target=0.01, budget="batch", paper_exact=True), weight=2.5)
    assert ratio > 0.01 and exact.item() > 0 and not exact.requires_grad
    normal, _ = compute_penalty(probs, macs, gate_cfg(target=0.01, budget="batch"), weight=2.5)
    normal.backward()
    assert all(block.gate.alpha.grad != 0 for block in model.blocks)


def test_sample_budget_is_per_sample_hinge():
    probs = torch.tensor([[1.0, 1.0], [0.0, 0.0]], requires_grad=True)
    batch, r = compute_penalty(probs, [1, 1], gate_cfg(target=0.6, budget="batch"), 1.0)
    sample, r2 = compute_penalty(probs, [1, 1], gate_cfg(target=0.6, budget="sample"), 1.0)
    assert r.item() == r2.item() == 0.5
    assert batch.item() == 0.0  # the batch mean is under budget
    assert sample.item() == pytest.approx(0.5 * 0.4**2)  # but the first sample is over its own
    sample.backward()
    assert probs.grad[0].abs().sum() > 0 and probs.grad[1].abs().sum() == 0


def test_difficulty_budget_gives_easy_samples_less_compute():
    probs = torch.full((4, 3), 0.6, requires_grad=True)
    losses = torch.tensor([0.1, 2.0, 0.5, 1.0])  # sample 0 easiest, sample 1 hardest
    cfg = gate_cfg(target=0.6, budget="difficulty", budget_spread=0.2)
    penalty, _ = compute_penalty(probs, [1, 1, 1], cfg, 1.0, losses)
    assert penalty.item() > 0  # at the mean target, yet the easy samples are over their lowered targets
    penalty.backward()
    g = probs.grad.sum(1)
    assert g[0] > g[2] > 0 and g[3] == 0 and g[1] == 0
    # without spread, or without losses, it is the sample budget
    no_spread, _ = compute_penalty(probs, [1, 1, 1], gate_cfg(target=0.6, budget="difficulty"), 1.0, losses)
    assert no_spread.item() == 0.0
    no_losses, _ = compute_penalty(probs, [1, 1, 1], cfg, 1.0)
    assert no_losses.item() == 0.0


def test_penalty_ramp_is_linear():
    cfg = gate_cfg(penalty=2.5, ramp_epochs=40)
    assert schedules.penalty_weight(cfg, 0, 160) == 0.0
    assert schedules.penalty_weight(cfg, 10, 160) == pytest.approx(2.5 * 0.25)
    assert schedules.penalty_weight(cfg, 20, 160) == pytest.approx(1.25)
    assert schedules.penalty_weight(cfg, 40, 160) == schedules.penalty_weight(cfg, 100, 160) == 2.5
    frac = gate_cfg(penalty=5.0, ramp_epochs=0.5)  # a float below 1: fraction of the schedule
    assert schedules.penalty_weight(frac, 5, 20) == pytest.approx(2.5)
    assert schedules.penalty_weight(gate_cfg(penalty=1.0, ramp_epochs=0), 0, 10) == 1.0


def test_temperature_anneals():
    cfg = gate_cfg(temperature_start=1.0, temperature_end=0.2)
    assert schedules.temperature(cfg, 0, 10) == 1.0
    assert schedules.temperature(cfg, 10, 10) == pytest.approx(0.2)
    values = [schedules.temperature(cfg, e, 10) for e in range(11)]
    assert values == sorted(values, reverse=True)


def test_noise_scale_anneals_linearly_to_noise_end():
    cfg = gate_cfg(noise_end=0.0)
    assert [schedules.noise_scale(cfg, e, 10) for e in (0, 5, 10, 12)] == [1.0, 0.5, 0.0, 0.0]
    assert schedules.noise_scale(gate_cfg(), 10, 10) == 1.0  # default: the noise is never annealed


def test_noise_epochs_ends_the_noise_early():
    half = gate_cfg(noise_end=0.0, noise_epochs=0.5)  # a fraction of the schedule
    assert [schedules.noise_scale(half, e, 10) for e in (0, 2.5, 5, 8)] == [1.0, 0.5, 0.0, 0.0]
    three = gate_cfg(noise_end=0.0, noise_epochs=3)  # whole epochs
    assert [schedules.noise_scale(three, e, 10) for e in (0, 1.5, 3, 9)] == [1.0, 0.5, 0.0, 0.0]


def test_collapse_penalty_reopens_a_saturated_gate():
    from cosinegate.training.penalty import collapse_penalty

    cfg = {"min_rate": 0.25, "min_rate_weight": 20.0}
    closed = torch.full((64, 2), -30.0, requires_grad=True)  # sigmoid(-30): no gradient through probabilities
    penalty = collapse_penalty(closed, cfg)
    penalty.backward()
    assert penalty.item() > 0 and (closed.grad < 0).any(dim=0).all()  # descent raises some logits of every block
    open_enough = torch.cat([torch.full((20, 2), 2.0), torch.full((44, 2), -2.0)])  # 31% open, above the margin
    assert collapse_penalty(open_enough, cfg).item() == 0.0
    assert collapse_penalty(closed, {"min_rate": 0.0, "min_rate_weight": 20.0}).item() == 0.0


def test_batch_quantile_equals_torch_quantile_values_and_gradients():
    from cosinegate.training.penalty import batch_quantile

    generator = torch.Generator().manual_seed(0)
    for count in (1, 2, 7, 128):
        for q in (0.0, 0.25, 0.5, 0.75, 0.999, 1.0):
            ours_in = torch.randn(count, 5, generator=generator, requires_grad=True)
            ref_in = ours_in.detach().clone().requires_grad_(True)
            ours, ref = batch_quantile(ours_in, q), torch.quantile(ref_in, q, dim=0)
            assert torch.allclose(ours, ref, atol=1e-6), (count, q)
            weights = torch.arange(1.0, 6.0)
            (ours * weights).sum().backward()
            (ref * weights).sum().backward()
            assert torch.allclose(ours_in.grad, ref_in.grad, atol=1e-6), (count, q)
