"""The gates that decide, per sample and block, whether a residual block runs.

PaperGate follows the authors' code: it needs F(x) (through CIR) before it can
decide, so it saves no compute. PredictiveGate decides from the block input x
alone, so a skipped block is never computed.
"""

import torch
from torch import nn
from torch.nn import functional as F


def cosine_incongruity(shortcut, residual):
    """CIR = 1 - cos(vec(shortcut(x)), vec(F(x))) per sample, over C*H*W. Range [0, 2]."""
    cos = F.cosine_similarity(shortcut.flatten(1), residual.flatten(1), dim=1, eps=1e-8)
    return 1.0 - cos


class _SpatialMean(torch.autograd.Function):
    """Mean over H and W (fp32 accumulation) whose gradient is materialized in the input's memory format. The
    plain mean's gradient is an expanded (stride-0) tensor, and adding that to the channels_last bf16 gradient of
    the block input takes a slow strided path: ~15% of a gated training step on the CPU."""

    @staticmethod
    def forward(ctx, x):
        ctx.shape, ctx.dtype = x.shape, x.dtype
        ctx.channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        return x.mean(dim=(2, 3), dtype=torch.float32)

    @staticmethod
    def backward(ctx, grad):
        n, c, h, w = ctx.shape
        full = (grad / (h * w)).to(ctx.dtype)[:, :, None, None].expand(n, c, h, w)
        return full.contiguous(memory_format=torch.channels_last if ctx.channels_last else torch.contiguous_format)


def spatial_mean(x):
    """x.mean over H and W: in training the fast-gradient form, otherwise (inference, export) the plain mean."""
    if x.requires_grad and torch.is_grad_enabled() and not torch.jit.is_tracing() and not torch.onnx.is_in_onnx_export():
        return _SpatialMean.apply(x)
    return x.mean(dim=(2, 3))


def cir_target(shortcut, residual):
    """cosine_incongruity as the predictive gate's training target: the same quantity, reduced over C, H, W in
    place and accumulated in fp32, so a channels_last bf16 batch is neither copied to NCHW nor rounded to bf16."""
    dims = tuple(range(1, shortcut.dim()))
    dot = (shortcut * residual).sum(dims, dtype=torch.float32)
    norms = [torch.linalg.vector_norm(t, dim=dims, dtype=torch.float32).clamp_min(1e-8) for t in (shortcut, residual)]
    return 1.0 - dot / (norms[0] * norms[1])


def logistic_noise(like):
    """Logistic(0, 1) samples (the difference of two Gumbels), shaped like `like`."""
    u = torch.rand_like(like).clamp_(1e-6, 1 - 1e-6)
    return torch.log(u) - torch.log1p(-u)


def gumbel_noise(like):
    u = torch.rand_like(like).clamp_(1e-6, 1 - 1e-6)
    return -torch.log(-torch.log(u))


class PaperGate(nn.Module):
    """The authors' gate: logit = alpha_b * (CIR + c(x)), c(x) = MLP(avgpool(x)): C->64->32->1.

    Training: g = sigmoid((logit + G) / 0.6), G ~ Gumbel, soft (no straight-through).
    Inference: the block runs when sigmoid(logit) > 0.42.
    """

    needs_residual = True

    def __init__(self, channels, threshold=0.42, temperature=0.6, alpha_init=-2.2):
        super().__init__()
        self.controller = nn.Sequential(
            nn.Linear(channels, 64), nn.ReLU(inplace=True), nn.Linear(64, 32), nn.ReLU(inplace=True), nn.Linear(32, 1)
        )
        self.alpha = nn.Parameter(torch.tensor(float(alpha_init)))
        self.threshold = threshold
        self.temperature = temperature

    def logit(self, x, cir):
        control = self.controller(x.mean(dim=(2, 3))).squeeze(1)
        return self.alpha * (cir + control)

    def train_gate(self, logit):
        return torch.sigmoid((logit + gumbel_noise(logit)) / self.temperature)

    def decide(self, logit):
        return torch.sigmoid(logit) > self.threshold


class PredictiveGate(nn.Module):
    """Decides from x alone; CIR is its self-supervised training signal.

    h = ReLU(W1 avgpool(x)), a small controller on the pooled block input.
    cir_hat = softplus(w_c . h + b_c) regresses the block's stop-gradient CIR
    (an auxiliary MSE loss, so the gate learns which inputs the block would change).
    logit = softplus(a_b) * (cir_hat - t_b) + (w_g . h + b_g)
    is a learned monotone (increasing) function of the predicted CIR, shifted by a
    free controller term that the task loss and the compute penalty shape.
    b_g starts at `open_bias` so every gate starts open.

    Training: logistic-noise Gumbel-sigmoid, hard (straight-through) forward,
    temperature (and optionally the noise scale) annealed by the trainer. Inference: run when logit > 0, i.e.
    sigmoid(logit) > 0.5.
    """

    needs_residual = False

    def __init__(self, channels, hidden=16, open_bias=3.0):
        super().__init__()
        self.hidden = nn.Linear(channels, hidden)
        self.cir_head = nn.Linear(hidden, 1)
        self.control_head = nn.Linear(hidden, 1)
        self.cir_slope = nn.Parameter(torch.tensor(0.5413))  # softplus(0.5413) = 1
        self.cir_offset = nn.Parameter(torch.tensor(0.5))
        nn.init.zeros_(self.control_head.weight)
        nn.init.constant_(self.control_head.bias, open_bias)
        self.temperature = 1.0
        self.noise_scale = 1.0
        self.threshold = 0.5
        self.blend = 1.0  # set by the trainer while the gates are blended in (gate.gate_ramp_epochs)

    def forward(self, x):
        """Return (logit, predicted CIR), each of shape [N]."""
        h = F.relu(self.hidden(spatial_mean(x)))
        cir_hat = F.softplus(self.cir_head(h)).squeeze(1)
        control = self.control_head(h).squeeze(1)
        logit = F.softplus(self.cir_slope) * (cir_hat - self.cir_offset) + control
        return logit, cir_hat

    def train_gate(self, logit):
        """Straight-through Gumbel-sigmoid: hard 0/1 forward, soft gradient."""
        soft = torch.sigmoid((logit + self.noise_scale * logistic_noise(logit)) / self.temperature)
        hard = (soft > 0.5).to(soft.dtype)
        return hard + (soft - soft.detach())  # the bracket is exactly 0 in forward: gates are exactly 0/1

    @staticmethod
    def decide(logit):
        return logit > 0
