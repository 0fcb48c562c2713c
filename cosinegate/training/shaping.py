"""Batch-shaping (Bejnordi et al., ICLR 2020): pull each gate's distribution over a batch toward a Beta prior.

The loss is the Cramer-von Mises distance between the empirical CDF of a gate's
probabilities in the batch and the prior's CDF, evaluated at the sorted samples:
    L = mean_i (F(x_(i); a, b) - i / (N + 1))^2
(the paper sums over i; the mean keeps the weight independent of the batch size).
With a U-shaped prior such as Beta(0.6, 0.4) a gate is pushed to be on for some
images and off for others, rather than on or off for all of them.
The Beta CDF (regularized incomplete beta function) is computed in torch by its
continued fraction (fixed iterations, no host synchronization); its derivative is
the Beta density.
"""

import math

import torch

_EPS = 1e-6


def _log_beta(a, b):
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def _continued_fraction(x, a, b, terms):
    """The continued fraction of I_x(a, b) (modified Lentz; Numerical Recipes' betacf), elementwise.

    x, a, b: float64 tensors of one shape. It converges in O(sqrt(max(a, b))) terms; the count
    used is accurate to ~1e-14 (tested against mpmath).
    """
    tiny = 1e-300

    def guard(t):
        return torch.where(t.abs() < tiny, torch.full_like(t, tiny), t)

    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = torch.ones_like(x)
    d = 1.0 / guard(1.0 - qab * x / qap)
    h = d.clone()
    for m in range(1, terms + 1):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 / guard(1.0 + aa * d)
            c = guard(1.0 + aa / c)
            h = h * d * c
    return h


def _beta_cdf_value(x, a, b):
    x = x.double().clamp(_EPS, 1 - _EPS)
    front = torch.exp(a * torch.log(x) + b * torch.log1p(-x) - _log_beta(a, b))
    direct = x < (a + 1.0) / (a + b + 2.0)  # the fraction converges there; elsewhere use I_x(a,b) = 1 - I_{1-x}(b,a)
    xs = torch.where(direct, x, 1.0 - x)
    aa = torch.where(direct, torch.full_like(x, a), torch.full_like(x, b))
    bb = torch.where(direct, torch.full_like(x, b), torch.full_like(x, a))
    part = front * _continued_fraction(xs, aa, bb, 12 + int(4 * math.sqrt(max(a, b)))) / aa
    return torch.where(direct, part, 1.0 - part)


def beta_pdf(x, a, b):
    x = x.clamp(_EPS, 1 - _EPS)
    return torch.exp((a - 1.0) * torch.log(x) + (b - 1.0) * torch.log1p(-x) - _log_beta(a, b))


class _BetaCDF(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, a, b):
        ctx.save_for_backward(x)
        ctx.ab = (a, b)
        return _beta_cdf_value(x, a, b).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * beta_pdf(x, *ctx.ab).to(grad.dtype), None, None


def beta_cdf(x, a, b):
    """CDF of Beta(a, b) at x (any shape, values in [0, 1]), differentiable in x."""
    return _BetaCDF.apply(x, float(a), float(b))


def batch_shaping_loss(probs, prior):
    """Cramer-von Mises loss of every column of probs [N, B] against Beta(prior); mean over blocks."""
    if probs.shape[1] == 0 or probs.shape[0] < 2:
        return probs.new_zeros(())
    n = probs.shape[0]
    ordered, _ = torch.sort(probs.float(), dim=0)
    empirical = torch.arange(1, n + 1, device=probs.device, dtype=torch.float32).div_(n + 1).unsqueeze(1)
    return ((beta_cdf(ordered, *prior) - empirical) ** 2).mean()
