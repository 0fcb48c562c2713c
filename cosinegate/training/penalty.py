"""The differentiable MAC-weighted compute penalty."""

import torch


def compute_ratio(probs, block_macs):
    """Per-sample expected compute ratio r_i = sum_b MAC_b p_ib / sum_b MAC_b. probs: [N, B]."""
    weights = torch.as_tensor(block_macs, dtype=probs.dtype, device=probs.device)
    return probs @ weights / weights.sum()


def compute_penalty(probs, block_macs, gate_cfg, weight, sample_losses=None):
    """weight * hinge(r - target)^2 for the configured budget; returns (penalty, batch ratio r).

    budget "batch": r is the batch mean (the paper's form). "sample": the hinge is
    applied per sample and averaged. "difficulty": per-sample targets
    target + spread * (2 * loss_rank - 1), so easy samples (low loss) get less
    compute than hard ones while the mean target is unchanged.
    With paper_exact the ratio is rebuilt from a Python float, as the authors'
    code does with .item(), so the penalty has no gradient.
    """
    per_sample = compute_ratio(probs, block_macs)
    ratio = per_sample.mean()
    target = gate_cfg["target"]
    if gate_cfg["paper_exact"]:
        ratio_const = probs.new_tensor(ratio.item())
        return weight * torch.clamp(ratio_const - target, min=0) ** 2, ratio
    if gate_cfg["budget"] == "batch":
        return weight * torch.clamp(ratio - target, min=0) ** 2, ratio
    if gate_cfg["budget"] == "difficulty" and sample_losses is not None and len(sample_losses) > 1:
        rank = sample_losses.detach().argsort().argsort().to(probs.dtype) / (len(sample_losses) - 1)
        target = target + gate_cfg["budget_spread"] * (2 * rank - 1)
    return weight * (torch.clamp(per_sample - target, min=0) ** 2).mean(), ratio


def collapse_penalty(logits, gate_cfg, margin=0.5):
    """Anti-collapse term: min_rate_weight * sum_b hinge(margin - q_b)^2, where q_b is the
    (1 - min_rate) quantile of block b's gate logits over the batch.

    A block whose gate closes for (almost) every input is static pruning in disguise.
    This keeps each block open (logit above `margin`) for at least `min_rate` of a
    batch, so the compute budget has to be met by choosing *which* inputs skip it.
    It acts on logits, not probabilities: a collapsed gate has a saturated sigmoid,
    whose gradient vanishes, so a penalty on probabilities cannot reopen it (measured:
    blocks stayed at 100% skip under a probability floor).
    """
    if not gate_cfg["min_rate_weight"] or not gate_cfg["min_rate"] or logits.shape[1] == 0:
        return logits.new_zeros(())
    quantile = batch_quantile(logits, 1.0 - gate_cfg["min_rate"])
    return gate_cfg["min_rate_weight"] * (torch.clamp(margin - quantile, min=0) ** 2).sum()


def batch_quantile(values, q):
    """torch.quantile(values, q, dim=0) (linear interpolation) from one sort and host-side indices:
    the positions depend only on the batch size and q, so nothing waits for the device."""
    count = values.shape[0]
    position = q * (count - 1)
    low = int(position)
    high = min(low + 1, count - 1)
    ordered = values.sort(dim=0).values
    return ordered[low] + (position - low) * (ordered[high] - ordered[low])


def block_rate_targets(rates, num_blocks):
    """gate.block_rates (one number or one per block) -> a list with one target rate per block."""
    return list(rates) if isinstance(rates, (list, tuple)) else [float(rates)] * num_blocks


def block_rate_loss(gates, targets):
    """ConvNet-AIG's target-rate loss: mean over blocks of (batch-mean execution - target)^2.

    gates: [N, B] of the gated blocks, the straight-through decisions of training (GateStats.executed: 0/1
    forward, so the batch mean is the rate at which blocks really ran); targets: [B] execution rates. Unlike
    the MAC hinge it is two-sided and per block, so every block is held at its own rate instead of the network
    meeting one global budget. (On probabilities it is met by every gate at p = rate while all of them run.)
    """
    return ((gates.mean(0) - targets) ** 2).mean()
