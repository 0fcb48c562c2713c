"""The residual block: shortcut, residual branch F(x), optional gate."""

import torch
from torch import nn
from torch.nn import functional as F

from cosinegate.models.gates import PaperGate, PredictiveGate, cir_target, cosine_incongruity


class PadShortcut(nn.Module):
    """Option-A shortcut: subsample by the stride and zero-pad the new channels equally."""

    def __init__(self, in_channels, out_channels, stride):
        super().__init__()
        self.stride = stride
        self.pad = (out_channels - in_channels) // 2

    def forward(self, x):
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad, self.pad)) if self.pad else x


def make_shortcut(spec, kind):
    if not spec.changes_shape:
        return nn.Identity()
    if kind == "A":
        return PadShortcut(spec.in_channels, spec.out_channels, spec.stride)
    return nn.Sequential(
        nn.Conv2d(spec.in_channels, spec.out_channels, 1, spec.stride, bias=False), nn.BatchNorm2d(spec.out_channels)
    )


def make_residual(spec):
    """F(x): conv-BN pairs with ReLU between them (none after the last).

    basic: 3x3 (with the stride), 3x3. bottleneck: 1x1 reduce, 3x3 (with the stride), 1x1 expand.
    """
    if spec.kind == "bottleneck":
        mid = spec.mid_channels
        layers = [(spec.in_channels, mid, 1, 1), (mid, mid, 3, spec.stride), (mid, spec.out_channels, 1, 1)]
    else:
        layers = [(spec.in_channels, spec.out_channels, 3, spec.stride), (spec.out_channels, spec.out_channels, 3, 1)]
    modules = []
    for cin, cout, k, stride in layers:
        modules += [nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
    return nn.Sequential(*modules[:-1])


class GatedBlock(nn.Module):
    """y = post(shortcut(x) + g * F(x)); post is ReLU for CIFAR ResNets, identity for paper8.

    mode: "none" (dense, g = 1), "paper" or "predictive". A `dropped` block is
    removed for good (static pruning baseline): y = post(shortcut(x)).
    forward returns (y, stats) with stats: probs [N], gates [N] (hard, 1 = ran),
    cir_loss and consistency (scalars) where the mode defines them.
    """

    def __init__(self, spec, mode, shortcut_kind, relu_after_add, dropped=False, gate_hidden=16, open_bias=3.0):
        super().__init__()
        self.spec = spec
        self.mode = mode
        self.dropped = dropped
        self.relu_after_add = relu_after_add
        self.shortcut = make_shortcut(spec, shortcut_kind)
        self.residual = None if dropped else make_residual(spec)
        self.gate = None
        if mode == "paper" and not dropped:
            self.gate = PaperGate(spec.in_channels)
        elif mode == "predictive" and not dropped:
            self.gate = PredictiveGate(spec.in_channels, gate_hidden, open_bias)

    def post(self, y):
        return F.relu(y) if self.relu_after_add else y

    def forward(self, x):
        s = self.shortcut(x)
        if self.dropped:
            return self.post(s), {}
        if self.gate is None:
            return self.post(s + self.residual(x)), {}
        if self.mode == "paper":
            return self._forward_paper(x, s)
        return self._forward_predictive(x, s)

    def _forward_paper(self, x, s):
        f = self.residual(x)
        cir = cosine_incongruity(s, f)
        logit = self.gate.logit(x, cir)
        probs = torch.sigmoid(logit)
        decisions = self.gate.decide(logit)
        g = self.gate.train_gate(logit) if self.training else decisions.to(f.dtype)
        y = self.post(s + g.view(-1, 1, 1, 1) * f)
        stats = {"logits": logit, "probs": probs, "gates": decisions.to(f.dtype), "executed": g}
        if self.training:
            full = self.post(s + f)
            stats["consistency"] = F.mse_loss(F.normalize(y.flatten(1), dim=1), F.normalize(full.flatten(1), dim=1))
        return y, stats

    def _forward_predictive(self, x, s):
        logit, cir_hat = self.gate(x)
        decisions = self.gate.decide(logit)
        stats = {"logits": logit, "probs": torch.sigmoid(logit), "gates": decisions.to(x.dtype)}
        if self.training:
            f = self.residual(x)
            g = self.gate.train_gate(logit)
            stats["gates"] = (g.detach() > 0.5).to(x.dtype)
            stats["executed"] = g  # the decisions with their straight-through gradient (before any blend)
            if self.gate.blend < 1.0:  # gates introduced gradually (two-phase fine-tuning)
                g = 1.0 - self.gate.blend * (1.0 - g)
            with torch.no_grad():  # stop-gradient target: no autograd graph over the full activations
                cir = cir_target(s, f)
            stats["cir_loss"] = F.mse_loss(cir_hat, cir)
            return self.post(s + g.view(-1, 1, 1, 1) * f), stats
        return self._run_selected(x, s, decisions), stats

    def _run_selected(self, x, s, decisions):
        """Inference: compute F only for the samples whose gate is open."""
        if bool(decisions.all()):
            return self.post(s + self.residual(x))
        y = s.clone()
        if bool(decisions.any()):
            idx = decisions.nonzero().squeeze(1)
            y[idx] = s[idx] + self.residual(x[idx])
        return self.post(y)
