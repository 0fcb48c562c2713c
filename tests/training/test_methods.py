"""Issue-16 gating methods: per-block target rates, ungated stage-first blocks, batch-shaping (Beta CDF and
Cramer-von Mises loss against direct computations), two-phase --init-from with gate blending and distillation."""

import json

import mpmath
import numpy as np
import pytest
import torch
from torch.nn import functional as F

from conftest import run_script, tiny_config
from cosinegate.config import load_config, validate
from cosinegate.errors import CosineGateError
from cosinegate.macs import model_mac_table
from cosinegate.models import CosineGateNet, build_model
from cosinegate.training.checkpoint import load_checkpoint
from cosinegate.training.init_from import apply_init, read_init_weights
from cosinegate.training.penalty import block_rate_loss
from cosinegate.training.shaping import batch_shaping_loss, beta_cdf

PRIORS = [(0.6, 0.4), (0.5, 0.5), (2.0, 5.0), (30.0, 10.0)]

# ---- batch-shaping --------------------------------------------------------------------------------------


@pytest.mark.parametrize("a, b", PRIORS)
def test_beta_cdf_matches_direct_integration(a, b):
    x = torch.linspace(0.0, 1.0, 401, dtype=torch.float64)
    got = beta_cdf(x, a, b)
    clamped = x.clamp(1e-6, 1 - 1e-6)  # the CDF is evaluated inside (0, 1)
    ref = torch.tensor([float(mpmath.betainc(a, b, 0, float(v), regularized=True)) for v in clamped], dtype=torch.float64)
    assert (got - ref).abs().max().item() < 1e-12


def test_beta_cdf_gradient_is_the_density():
    x = torch.linspace(0.02, 0.98, 25, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: beta_cdf(t, 0.6, 0.4), (x,), eps=1e-7, atol=1e-6)


def test_batch_shaping_loss_equals_the_cramer_von_mises_formula():
    torch.manual_seed(0)
    probs = torch.rand(50, 3, dtype=torch.float64)
    a, b = 0.6, 0.4
    got = batch_shaping_loss(probs, [a, b]).item()
    per_block = []
    for column in probs.T.tolist():
        ordered = sorted(column)
        n = len(ordered)
        per_block.append(np.mean([(float(mpmath.betainc(a, b, 0, v, regularized=True)) - (i + 1) / (n + 1)) ** 2
                                  for i, v in enumerate(ordered)]))
    assert got == pytest.approx(float(np.mean(per_block)), rel=1e-6)


def test_batch_shaping_splits_a_gate_that_rate_loss_leaves_uniform():
    """From a gate open with the same probability for every image, batch-shaping toward Beta(0.6, 0.4) makes it
    on for some images and off for others; the rate loss at the same mean keeps it uniform."""
    def optimise(loss_fn):
        torch.manual_seed(0)
        logits = (0.4 + 0.05 * torch.randn(128, 1)).requires_grad_(True)
        opt = torch.optim.Adam([logits], lr=0.05)
        for _ in range(300):
            opt.zero_grad()
            loss_fn(torch.sigmoid(logits)).backward()
            opt.step()
        p = torch.sigmoid(logits).detach()
        return float((p < 0.2).float().mean()), float((p > 0.8).float().mean()), float(p.mean())

    low, high, mean = optimise(lambda p: batch_shaping_loss(p, [0.6, 0.4]))
    assert low > 0.2 and high > 0.35 and 0.5 < mean < 0.7
    low, high, mean = optimise(lambda p: block_rate_loss(p, torch.tensor([0.6])))
    assert low == 0.0 and high == 0.0 and mean == pytest.approx(0.6, abs=0.01)


# ---- per-block rates and ungated blocks ---------------------------------------------------------------------


def test_block_rate_loss_pushes_each_block_to_its_own_rate():
    torch.manual_seed(0)
    model = CosineGateNet("resnet20", "predictive", ungated_blocks="stage_first").train()
    assert model.ungated_blocks == (0, 3, 6)
    _, stats = model(torch.randn(16, 3, 32, 32))
    gated = [i for i, b in enumerate(model.blocks) if b.gate is not None]
    assert gated == [1, 2, 4, 5, 7, 8]
    executed = stats.executed[:, gated]
    assert set(executed.detach().unique().tolist()) <= {0.0, 1.0} and executed.requires_grad  # straight-through
    torch.testing.assert_close(executed.detach(), stats.gates[:, gated])
    targets = torch.tensor([0.2, 1.0, 0.2, 1.0, 0.2, 1.0])
    loss = block_rate_loss(executed, targets)
    assert loss.item() == pytest.approx(((stats.gates[:, gated].mean(0) - targets) ** 2).mean().item())
    loss.backward()
    for block, target in zip([model.blocks[i] for i in gated], targets):
        grad = block.gate.control_head.bias.grad.item()
        assert grad > 0 if target < 0.5 else grad < 0  # descent closes the 0.2 blocks and opens the 1.0 ones


def test_rate_loss_sees_blocks_that_run_although_their_probability_is_on_target(fake_cifar_root, tmp_path):
    """Measured on real CIFAR-10 (8 epochs, CPU): with the loss on probabilities every gate sat at p ~ 0.6 while
    98.5% of the blocks ran. Gates all open at p = 0.6 must cost the full (1 - 0.6)^2 per block."""
    from cosinegate.training.loop import Trainer

    config = tiny_config(fake_cifar_root, epochs=1)
    config["model"].update(mode="predictive", ungated_blocks="stage_first")
    config["gate"].update(penalty=0.0, block_rates=0.6, block_rate_weight=2.0, ramp_epochs=0.3, cir_weight=0.0,
                          batch_shaping_weight=0.0, min_rate_weight=0.0)
    trainer = Trainer(validate(config), tmp_path / "run", progress=False)
    trainer.model.set_temperature(0.5, noise_scale=0.0)
    with torch.no_grad():
        for block in trainer.model.blocks:
            if block.gate is not None:  # logit = log(0.6 / 0.4) for every image: p = 0.6, decision: run
                block.gate.control_head.weight.zero_()
                block.gate.cir_slope.fill_(-30.0)
                block.gate.control_head.bias.fill_(float(np.log(0.6 / 0.4)))
    x, y = trainer.batch(torch.arange(8), torch.zeros(8, 3, dtype=torch.long))
    _, _, gates, penalty = trainer.forward_loss(x, y, 1.0)
    assert gates[:, trainer.gated].eq(1).all()
    assert penalty.item() == pytest.approx(2.0 * (1 - 0.6) ** 2, rel=1e-3)


def test_ungated_blocks_always_run_and_cost_no_gate():
    torch.manual_seed(0)
    model = build_model({"backbone": "resnet20", "mode": "predictive", "ungated_blocks": [0, 4]}).eval()
    table = model_mac_table(model)
    assert [b.gate == 0 for b in table.blocks] == [i in (0, 4) for i in range(9)]
    with torch.no_grad():
        for block in model.blocks:  # close every gate that exists
            if block.gate is not None:
                block.gate.control_head.bias.fill_(-50.0)
        _, stats = model(torch.randn(4, 3, 32, 32))
    assert stats.gates[:, [0, 4]].eq(1).all() and stats.gates[:, [1, 2, 3, 5, 6, 7, 8]].eq(0).all()
    with pytest.raises(CosineGateError, match="out of range"):
        build_model({"backbone": "resnet20", "mode": "predictive", "ungated_blocks": [9]})


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["gate"].update(block_rates=[0.5] * 4), "block_rates has 4 entries"),
    (lambda c: c["gate"].update(block_rates=1.5), "must lie in \\[0, 1\\]"),
    (lambda c: c["gate"].update(batch_shaping_prior=[0.6]), "batch_shaping_prior"),
    (lambda c: c["model"].update(ungated_blocks="stage_last"), "ungated_blocks"),
    (lambda c: c["distill"].update(weight=0.5), "needs a teacher: pass --init-from"),
])
def test_method_config_errors(edit, message):
    config = load_config("rates")
    edit(config)
    with pytest.raises(CosineGateError, match=message):
        validate(config)


def test_method_presets():
    for name in ("rates", "shaping"):
        config = validate(load_config(name))
        assert config["gate"]["block_rates"] == 0.6 and config["gate"]["penalty"] == 0.0
        assert config["model"]["ungated_blocks"] == "stage_first"
    assert validate(load_config("shaping"))["gate"]["batch_shaping_weight"] > 0
    config = load_config("two-phase")
    config["init_from"] = "phase-one.pt"
    assert validate(config)["distill"]["weight"] > 0 and config["gate"]["gate_ramp_epochs"] > 0
    from cosinegate.research.cpu_campaign import PROTOCOL  # the fine-tune preset carries the campaign's gate recipe (v2)

    assert {k: config["gate"][k] for k in PROTOCOL["finetune"]["gate"]} == PROTOCOL["finetune"]["gate"]


# ---- two phases ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dense_run(tmp_path_factory, tiny_checkpoint):
    """A run folder with a dense (mode none) checkpoint: the session's tiny run with its config made dense and a
    dense model's weights (nothing in these tests needs it trained)."""
    from cosinegate.training.checkpoint import save_checkpoint

    out = tmp_path_factory.mktemp("dense") / "run"
    out.mkdir()
    state = load_checkpoint(tiny_checkpoint)
    state["config"]["model"]["mode"] = "none"
    torch.manual_seed(1)
    state["model"] = build_model(state["config"]["model"], state["num_classes"]).state_dict()
    save_checkpoint(out / "last.pt", **{k: v for k, v in state.items() if k != "format"})
    return out


def test_init_from_copies_the_backbone_and_leaves_gates_fresh(dense_run):
    dense = load_checkpoint(dense_run / "last.pt")["model"]
    torch.manual_seed(3)
    model = CosineGateNet("resnet20", "predictive")
    report = apply_init(model, *read_init_weights(dense_run / "last.pt"))
    own = model.state_dict()
    assert report["loaded_tensors"] == len(dense) and report["ignored_tensors"] == []
    assert all(torch.equal(own[k], dense[k]) for k in dense)
    assert report["fresh_modules"] and all(".gate" in m for m in report["fresh_modules"])
    assert all(b.gate.control_head.bias.item() == 3.0 for b in model.blocks)  # fresh and open
    with pytest.raises(CosineGateError, match="holds a resnet20 but this run trains a resnet32"):
        apply_init(CosineGateNet("resnet32", "predictive"), *read_init_weights(dense_run / "last.pt"))
    with pytest.raises(CosineGateError, match="other shapes"):
        apply_init(CosineGateNet("resnet20", "predictive", num_classes=5), *read_init_weights(dense_run / "last.pt"))


def test_gate_blend_zero_trains_the_dense_network():
    torch.manual_seed(0)
    gated = CosineGateNet("resnet20", "predictive").train()
    dense = CosineGateNet("resnet20", "none").train()
    dense.load_state_dict({k: v for k, v in gated.state_dict().items() if ".gate." not in k})
    with torch.no_grad():
        for block in gated.blocks:
            block.gate.control_head.bias.fill_(-5.0)  # closed gates: blend 0 must still run every block
    x = torch.randn(8, 3, 32, 32)
    gated.set_gate_blend(0.0)
    torch.testing.assert_close(gated(x)[0], dense(x)[0])
    gated.set_gate_blend(1.0)
    assert not torch.allclose(gated(x)[0], dense(x)[0], atol=1e-3)


def test_distillation_loss_uses_the_teacher(dense_run, fake_cifar_root, tmp_path):
    from cosinegate.training.loop import Trainer

    config = tiny_config(fake_cifar_root, epochs=1)
    config.update(init_from=str(dense_run / "last.pt"), distill={"weight": 0.5, "temperature": 4.0})
    config["gate"].update(penalty=0.0, cir_weight=0.0)
    trainer = Trainer(validate(config), tmp_path / "run", progress=False)
    x, y = trainer.batch(torch.arange(8), torch.zeros(8, 3, dtype=torch.long))
    torch.manual_seed(0)
    loss, logits, _, _ = trainer.forward_loss(x, y, 0.0)
    with torch.no_grad():
        teacher, _ = trainer.teacher(x)
    kd = F.kl_div(F.log_softmax(logits / 4, 1), F.softmax(teacher / 4, 1), reduction="batchmean")
    expected = 0.5 * F.cross_entropy(logits, y) + 0.5 * 16 * kd
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert kd.item() > 1e-4  # the teacher is not the student


def test_train_init_from_cli_records_the_source(dense_run, fake_cifar_root, tmp_path):
    out = tmp_path / "phase2"
    result = run_script("train/train.py", "--config", "two-phase", "--init-from", dense_run / "last.pt", "--data", "cifar10",
                        "--data-root", fake_cifar_root, "--epochs", "1", "--batch-size", "64", "--no-progress", "--out", out)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    from cosinegate.artifacts import sha256_file

    assert summary["init_from"]["sha256"] == sha256_file(dense_run / "last.pt")
    assert summary["config"]["distill"]["weight"] == 0.5 and summary["final"]["skip_rates"][0] == 0.0
    missing = run_script("train/train.py", "--config", "two-phase", "--epochs", "1", "--no-progress", "--out", tmp_path / "x")
    assert missing.returncode == 2 and "needs a teacher" in missing.stderr


# ---- deeper CIFAR backbones ------------------------------------------------------------------------------------


def _closed_form_dense_macs(n):
    """He et al.'s CIFAR ResNet-(6n+2) with option-A shortcuts, counted by hand: stem, 3 stages, classifier."""
    total = 9 * 3 * 16 * 32 * 32 + 64 * 10
    for stage, (width, size) in enumerate(((16, 32), (32, 16), (64, 8))):
        first_in = width if stage == 0 else width // 2
        total += 9 * first_in * width * size * size + 9 * width * width * size * size  # first block of the stage
        total += (n - 1) * 2 * 9 * width * width * size * size
    return total


@pytest.mark.parametrize("backbone, n", [("resnet20", 3), ("resnet32", 5), ("resnet44", 7), ("resnet56", 9), ("resnet110", 18)])
def test_deeper_backbones_dense_macs(backbone, n):
    from torch import nn

    from cosinegate.macs import mac_table

    model = CosineGateNet(backbone, "none").eval()
    assert len(model.blocks) == 3 * n
    counted = []

    def hook(module, inputs, output):  # an independent count: the layers actually run
        if isinstance(module, nn.Conv2d):
            counted.append(module.kernel_size[0] * module.kernel_size[1] * module.in_channels * output[0].numel())
        else:
            counted.append(module.in_features * module.out_features)

    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.register_forward_hook(hook)
    with torch.no_grad():
        model(torch.zeros(1, 3, 32, 32))
    assert mac_table(backbone).dense == _closed_form_dense_macs(n) == sum(counted)
