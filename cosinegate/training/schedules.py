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
    """Linear anneal of the gate noise scale from 1 to noise_end over the schedule."""
    return 1.0 + (gate_cfg["noise_end"] - 1.0) * min(progress / epochs, 1.0)


def ramp_epochs(gate_cfg, epochs):
    ramp = gate_cfg["ramp_epochs"]
    return ramp * epochs if isinstance(ramp, float) and ramp < 1 else float(ramp)


def penalty_weight(gate_cfg, progress, epochs):
    """lambda * linear ramp from 0 to 1 over ramp_epochs."""
    ramp = ramp_epochs(gate_cfg, epochs)
    return gate_cfg["penalty"] * (min(progress / ramp, 1.0) if ramp > 0 else 1.0)
