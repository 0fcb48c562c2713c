"""Pure functions of training progress: learning rate, gate temperature, penalty ramp."""

import math


def learning_rate(optim_cfg, progress):
    """LR at fractional epoch `progress` (0 = start)."""
    base, epochs = optim_cfg["lr"], optim_cfg["epochs"]
    warmup = optim_cfg.get("warmup_epochs", 0)
    if warmup and progress < warmup:
        return base * (progress + 1e-3) / warmup
    schedule = optim_cfg["schedule"]
    if schedule == "cosine":
        return 0.5 * base * (1 + math.cos(math.pi * min(progress / epochs, 1.0)))
    if schedule == "onecycle":
        peak = 0.15 * epochs
        if progress < peak:
            return base * (0.1 + 0.9 * progress / peak)
        return 0.5 * base * (1 + math.cos(math.pi * min((progress - peak) / (epochs - peak), 1.0)))
    # cosine warm restarts (SGDR): period t0, multiplied by t_mult after each restart
    period, start = float(optim_cfg["t0"]), 0.0
    while progress >= start + period:
        start += period
        period *= optim_cfg["t_mult"]
    return 0.5 * base * (1 + math.cos(math.pi * (progress - start) / period))


def temperature(gate_cfg, progress, epochs):
    """Exponential anneal from temperature_start to temperature_end over the schedule."""
    t0, t1 = gate_cfg["temperature_start"], gate_cfg["temperature_end"]
    return t0 * (t1 / t0) ** min(progress / epochs, 1.0)


def noise_scale(gate_cfg, progress, epochs):
    """Linear anneal of the gate noise scale from 1 to noise_end over noise_epochs (0: the whole schedule)."""
    span = _epochs(gate_cfg["noise_epochs"], epochs) or epochs
    return 1.0 + (gate_cfg["noise_end"] - 1.0) * min(progress / span, 1.0)


def _epochs(value, epochs):
    return value * epochs if isinstance(value, float) and value < 1 else float(value)


def ramp_epochs(gate_cfg, epochs):
    return _epochs(gate_cfg["ramp_epochs"], epochs)


def penalty_ramp(gate_cfg, progress, epochs):
    """Linear ramp from 0 to 1 over ramp_epochs: scales every compute penalty (MAC hinge, block rates)."""
    ramp = ramp_epochs(gate_cfg, epochs)
    return min(progress / ramp, 1.0) if ramp > 0 else 1.0


def penalty_weight(gate_cfg, progress, epochs):
    """lambda * linear ramp from 0 to 1 over ramp_epochs."""
    return gate_cfg["penalty"] * penalty_ramp(gate_cfg, progress, epochs)


def gate_blend(gate_cfg, progress, epochs):
    """How far the gates decide in training: linear from 0 (every block runs) to 1 over gate_ramp_epochs."""
    ramp = _epochs(gate_cfg["gate_ramp_epochs"], epochs)
    return min(progress / ramp, 1.0) if ramp > 0 else 1.0


def batch_shaping_weight(gate_cfg, progress, epochs):
    """batch_shaping_weight, linear from 1x to batch_shaping_end x over the schedule."""
    end = gate_cfg["batch_shaping_end"]
    return gate_cfg["batch_shaping_weight"] * (1.0 + (end - 1.0) * min(progress / epochs, 1.0))
