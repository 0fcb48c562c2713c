"""Training configurations: defaults, YAML presets, validation and overrides."""

import copy
from pathlib import Path

from cosinegate.errors import CosineGateError

DEFAULTS = {
    "name": "custom",
    "seed": 0,
    "model": {"backbone": "resnet20", "mode": "predictive", "drop_blocks": [], "gate_hidden": 16, "open_bias": 3.0},
    "gate": {
        # compute penalty: lambda * ramp(epoch) * hinge(r - target)^2 on the MAC-weighted expected compute ratio r
        "target": 0.72,
        "penalty": 2.5,
        "ramp_epochs": 40,  # an int counts epochs, a float below 1 is a fraction of the schedule
        "budget": "batch",  # batch | sample | difficulty
        "budget_spread": 0.0,  # difficulty budget: per-sample targets spread +-spread around target by loss rank
        "paper_exact": False,  # reproduce the authors' bug: r from .item(), so the penalty has no gradient
        "temperature_start": 1.0,
        "temperature_end": 0.2,
        "noise_end": 1.0,  # predictive: scale of the logistic noise at the end (linear from 1); 0 = train on test-time routing
        "min_rate": 0.0,  # anti-collapse: each block should run for at least this fraction of a batch
        "min_rate_weight": 0.0,  # weight of hinge(0.5 - (1 - min_rate) logit quantile)^2, summed over blocks
        "cir_weight": 1.0,  # predictive: weight of the CIR regression loss
        "consistency_weight": 0.0,  # paper: MSE of normalized gated vs ungated block outputs
    },
    "optim": {
        "epochs": 30,
        "batch_size": 128,
        "lr": 0.1,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "schedule": "cosine",  # cosine | cosine_restarts | onecycle
        "t0": 50,
        "t_mult": 2,
        "warmup_epochs": 0,
        "grad_clip": 1.0,
    },
    "data": {"source": "synthetic", "root": None, "subset": None, "val_fraction": 0.1, "augment": True},
}

CHOICES = {
    ("gate", "budget"): ("batch", "sample", "difficulty"),
    ("optim", "schedule"): ("cosine", "cosine_restarts", "onecycle"),
}
CONFIG_DIR = Path(__file__).resolve().parent.parent / "train" / "configs"


def preset_names():
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def resolve_config_path(name_or_path):
    path = Path(name_or_path)
    if path.is_file():
        return path
    candidate = CONFIG_DIR / f"{name_or_path}.yaml"
    if candidate.is_file():
        return candidate
    raise CosineGateError(
        f"unknown config or preset {name_or_path!r}; use a YAML path or one of: {', '.join(preset_names())} "
        f"(e.g. --config train/configs/balanced.yaml)."
    )


def load_config(name_or_path):
    """Load a preset name or YAML path, merged over DEFAULTS and validated."""
    import yaml

    path = resolve_config_path(name_or_path)
    try:
        overrides = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise CosineGateError(f"config {path} is not valid YAML ({exc}).") from exc
    return merge(DEFAULTS, overrides, str(path))


def merge(base, overrides, source="config"):
    """Deep-merge overrides into a copy of base, refusing unknown keys."""
    merged = copy.deepcopy(base)
    for key, value in (overrides or {}).items():
        if key not in merged:
            raise CosineGateError(f"{source}: unknown key {key!r}; valid keys: {', '.join(sorted(merged))}.")
        if isinstance(merged[key], dict):
            if not isinstance(value, dict):
                raise CosineGateError(f"{source}: {key!r} must be a mapping.")
            merged[key] = merge(merged[key], value, f"{source}:{key}")
        else:
            merged[key] = value
    return merged


def validate(config):
    """Check values a config cannot run with; return the config."""
    from cosinegate.models.backbones import backbone_spec
    from cosinegate.models.network import MODES

    backbone_spec(config["model"]["backbone"])
    if config["model"]["mode"] not in MODES:
        raise CosineGateError(f"unknown gate mode {config['model']['mode']!r}; choose one of {', '.join(MODES)}.")
    for (section, key), allowed in CHOICES.items():
        if config[section][key] not in allowed:
            raise CosineGateError(f"{section}.{key} = {config[section][key]!r}; choose one of {', '.join(allowed)}.")
    if config["optim"]["epochs"] < 1 or config["optim"]["batch_size"] < 1:
        raise CosineGateError("optim.epochs and optim.batch_size must be at least 1.")
    if not 0.0 < config["gate"]["target"] <= 1.0:
        raise CosineGateError("gate.target is a compute ratio and must lie in (0, 1].")
    if not 0.0 <= config["gate"]["noise_end"] <= 1.0:
        raise CosineGateError("gate.noise_end scales the gate noise at the end of training and must lie in [0, 1].")
    return config
