"""CosineGateNet: stem, gateable residual blocks, classifier (stem and classifier never gated)."""

import math
from dataclasses import dataclass

import torch
from torch import nn

from cosinegate.data.normalization import CIFAR10
from cosinegate.errors import CosineGateError
from cosinegate.models.backbones import backbone_spec
from cosinegate.models.blocks import GatedBlock
from cosinegate.models.choices import MODES, block_indices, whole_number
from cosinegate.models.ungated import resolve_ungated
from cosinegate.schema import MAX_GATE_HIDDEN, shown

@dataclass
class GateStats:
    """Per-sample, per-block gate information of one forward pass.

    logits, probs, gates: [N, blocks]; gates are hard decisions, 1 = block ran.
    Dense and dropped blocks report gates 1 and 0 and probs equal to their gate.
    executed: [N, blocks], the gates as the residuals were scaled in training (predictive: straight-through,
    exactly the 0/1 decisions forward, the soft gradient backward), the hard decisions otherwise: a loss on
    execution rates belongs on these, since probs can sit at any rate while every gate is open.
    """

    logits: torch.Tensor
    probs: torch.Tensor
    gates: torch.Tensor
    executed: torch.Tensor
    cir_loss: torch.Tensor
    consistency: torch.Tensor


def make_stem(spec):
    """CIFAR: 3x3 stride-1 conv, BN, ReLU. ImageNet: 7x7 stride-2 conv, BN, ReLU, 3x3 stride-2 max-pool."""
    k, stride = spec.stem_kernel, spec.stem_stride
    layers = [nn.Conv2d(spec.in_channels, spec.stem_channels, k, stride, k // 2, bias=False),
              nn.BatchNorm2d(spec.stem_channels), nn.ReLU(inplace=True)]
    if spec.stem == "imagenet":
        layers.append(nn.MaxPool2d(3, 2, 1))
    return nn.Sequential(*layers)


class CosineGateNet(nn.Module):
    def __init__(self, backbone="resnet20", mode="predictive", num_classes=10, drop_blocks=(), gate_hidden=16, open_bias=3.0,
                 ungated_blocks=(), image_size=None):
        super().__init__()
        if mode not in MODES:
            raise CosineGateError(f"unknown gate mode {mode!r}; choose one of {', '.join(MODES)}.")
        self.spec = backbone_spec(backbone, image_size)
        self.normalization = dict(CIFAR10)  # input mean/std; training and checkpoints set the real one
        drop_blocks = block_indices("drop_blocks", drop_blocks, backbone, len(self.spec.blocks))
        hidden = whole_number(gate_hidden)
        if hidden is None or not 1 <= hidden <= MAX_GATE_HIDDEN:  # before any layer is made of it
            raise CosineGateError(f"gate_hidden = {shown(gate_hidden)}; give the gate's hidden units, 1..{MAX_GATE_HIDDEN}.")
        try:
            bias = float(open_bias)
        except (TypeError, ValueError, OverflowError):
            bias = math.nan
        if isinstance(open_bias, (bool, str)) or not -100 <= bias <= 100:  # nan fails too
            raise CosineGateError(f"open_bias = {shown(open_bias)}; give the gate logit's starting bias, -100..100.")
        gate_hidden, open_bias = hidden, bias
        self.backbone = backbone
        self.mode = mode
        self.num_classes = num_classes
        self.drop_blocks = tuple(drop_blocks)
        self.stem = make_stem(self.spec)
        self.blocks = nn.ModuleList(
            GatedBlock(b, mode, self.spec.shortcut, self.spec.relu_after_add, b.index in drop_blocks, gate_hidden, open_bias)
            for b in self.spec.blocks
        )
        self.ungated_blocks = tuple(resolve_ungated(backbone, ungated_blocks if isinstance(ungated_blocks, str) else list(ungated_blocks)))
        for index in self.ungated_blocks:  # always run: a dense block (the gate was built first, so the init is unchanged)
            self.blocks[index].gate = None
        self.fc = nn.Linear(self.spec.feature_channels, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    @property
    def image_size(self):
        return self.spec.image_size

    @property
    def num_blocks(self):
        return len(self.blocks)

    def set_gate_blend(self, blend):
        """Predictive gates in training: g_train = 1 - blend * (1 - g); 0 = every block runs, 1 = the gates decide."""
        for block in self.blocks:
            if block.gate is not None and self.mode == "predictive":
                block.gate.blend = blend

    def set_temperature(self, temperature, noise_scale=1.0):
        """Predictive gates: Gumbel-sigmoid temperature and logistic-noise scale (the paper's gate keeps its own)."""
        for block in self.blocks:
            if block.gate is not None and self.mode == "predictive":
                block.gate.temperature = temperature
                block.gate.noise_scale = noise_scale

    def features(self, x):
        """Run stem and blocks; return (pooled features, GateStats)."""
        x = self.stem(x)
        per_block = []
        for block in self.blocks:
            x, stats = block(x)
            per_block.append(stats)
        return x.mean(dim=(2, 3)), self._collect(per_block, x)

    def forward(self, x):
        pooled, stats = self.features(x)
        return self.fc(pooled), stats

    def _collect(self, per_block, like):
        n = like.shape[0]
        logits, probs, gates, executed, cir, cons = [], [], [], [], [], []
        for block, stats in zip(self.blocks, per_block):
            if "gates" in stats:
                logits.append(stats["logits"])
                probs.append(stats["probs"])
                gates.append(stats["gates"])
                executed.append(stats.get("executed", stats["gates"]))
            else:
                fixed = like.new_full((n,), 0.0 if block.dropped else 1.0)
                logits.append(like.new_full((n,), float("-inf") if block.dropped else float("inf")))
                probs.append(fixed)
                gates.append(fixed)
                executed.append(fixed)
            if "cir_loss" in stats:
                cir.append(stats["cir_loss"])
            if "consistency" in stats:
                cons.append(stats["consistency"])
        zero = like.new_zeros(())
        return GateStats(
            logits=torch.stack(logits, 1),
            probs=torch.stack(probs, 1),
            gates=torch.stack(gates, 1),
            executed=torch.stack(executed, 1),
            cir_loss=torch.stack(cir).mean() if cir else zero,
            consistency=torch.stack(cons).mean() if cons else zero,
        )


def build_model(model_cfg, num_classes=10, image_size=None):
    """Build a CosineGateNet from the `model` section of a config (a dict) for `image_size` inputs."""
    return CosineGateNet(
        backbone=model_cfg["backbone"],
        mode=model_cfg["mode"],
        num_classes=num_classes,
        drop_blocks=model_cfg.get("drop_blocks") or (),
        gate_hidden=model_cfg.get("gate_hidden", 16),
        open_bias=model_cfg.get("open_bias", 3.0),
        ungated_blocks=model_cfg.get("ungated_blocks") or (),
        image_size=image_size,
    )
