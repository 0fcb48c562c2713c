"""Training configurations: defaults, YAML presets, validation and overrides."""

import copy
import math
from pathlib import Path

from cosinegate.errors import CosineGateError

DEFAULTS = {
    "name": "custom",
    "seed": 0,
    "model": {
        "backbone": "resnet20", "mode": "predictive", "drop_blocks": [], "gate_hidden": 16, "open_bias": 3.0,
        "ungated_blocks": [],  # blocks that keep no gate (always run): 0-based indices, or "stage_first"
    },
    # two phases: initialise from this CosineGate checkpoint (train.py --init-from); gates stay freshly initialised
    "init_from": None,
    # distillation from the --init-from checkpoint's logits: (1 - weight) * CE + weight * T^2 * KL(teacher || student)
    "distill": {"weight": 0.0, "temperature": 4.0},
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
        # per-block target execution rates (ConvNet-AIG): block_rate_weight * ramp * mean_b (mean_batch p_b - t_b)^2
        "block_rates": None,  # None (off), one rate for every gated block, or a list with one rate per block
        "block_rate_weight": 0.0,
        # batch-shaping (Bejnordi et al. 2020): Cramer-von Mises distance of each gate's batch distribution to a Beta prior
        "batch_shaping_weight": 0.0,
        "batch_shaping_prior": [0.6, 0.4],  # Beta(a, b)
        "batch_shaping_end": 1.0,  # weight multiplier at the end of training (linear from 1)
        # predictive: the gates are blended in, g_train = 1 - a * (1 - g), a from 0 to 1 over this many epochs
        "gate_ramp_epochs": 0,  # an int counts epochs, a float below 1 is a fraction of the schedule; 0 = on from the start
    },
    "optim": {
        "epochs": 30,
        "batch_size": 128,
        "lr": 0.1,
        "momentum": 0.9,
        "nesterov": False,
        "label_smoothing": 0.0,  # cross-entropy against (1 - eps) one-hot + eps uniform
        "gate_lr_scale": 1.0,  # the gates' learning rate is lr x this (fine-tuning: fresh gates on a trained backbone)
        "weight_decay": 5e-4,
        "schedule": "cosine",  # cosine | cosine_restarts | onecycle
        "t0": 50,
        "t_mult": 2,
        "warmup_epochs": 0,
        "grad_clip": 1.0,
    },
    "data": {
        "source": "synthetic", "root": None, "subset": None, "val_fraction": 0.1, "augment": True,
        "image_size": None,  # input height = width; None = the backbone's usual size (32 CIFAR/paper8, 224 ImageNet ResNets)
        "normalization": "auto",  # auto (per-channel mean/std of the training split) | cifar10 | imagenet | [[m,m,m],[s,s,s]]
    },
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
    if not isinstance(overrides, dict):
        raise CosineGateError(f"config {path} holds a YAML {type(overrides).__name__}, not a mapping of sections "
                              "(model:, data:, optim:, gate:); start from one of train/configs/*.yaml.")
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
            default = merged[key]
            number = (int, float)
            if (isinstance(default, number) and not isinstance(default, bool)
                    and (not isinstance(value, number) or isinstance(value, bool))):
                raise CosineGateError(f"{source}: {key!r} = {value!r} must be a number (default {default!r}).")
            if isinstance(default, bool) and not isinstance(value, bool):
                raise CosineGateError(f"{source}: {key!r} = {value!r} must be true or false.")
            merged[key] = value
    return merged


def validate(config):
    """Check values a config cannot run with; return the config."""
    from cosinegate.models.backbones import backbone_spec
    from cosinegate.models.network import MODES

    from cosinegate.data.normalization import check_normalization
    from cosinegate.models.backbones import default_image_size

    data = config["data"]
    if data["image_size"] is None:
        data["image_size"] = default_image_size(config["model"]["backbone"])
    if isinstance(data["image_size"], bool) or not isinstance(data["image_size"], int):
        raise CosineGateError(f"data.image_size = {data['image_size']!r}; give a whole number of pixels, e.g. --image-size 224.")
    backbone_spec(config["model"]["backbone"], data["image_size"])
    check_normalization(data["normalization"])
    if config["model"]["mode"] not in MODES:
        raise CosineGateError(f"unknown gate mode {config['model']['mode']!r}; choose one of {', '.join(MODES)}.")
    for (section, key), allowed in CHOICES.items():
        if config[section][key] not in allowed:
            raise CosineGateError(f"{section}.{key} = {config[section][key]!r}; choose one of {', '.join(allowed)}.")
    for key in ("epochs", "batch_size"):
        value = config["optim"][key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise CosineGateError(f"optim.{key} = {value!r}; it must be a whole number of at least 1.")
    lr = config["optim"]["lr"]
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        raise CosineGateError(f"optim.lr = {lr!r}; the learning rate must be a finite number above 0.")
    smoothing = config["optim"]["label_smoothing"]
    if not (isinstance(smoothing, (int, float)) and 0.0 <= smoothing < 1.0):
        raise CosineGateError(f"optim.label_smoothing = {smoothing!r}; give a number in [0, 1), e.g. 0.1.")
    scale = config["optim"]["gate_lr_scale"]
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        raise CosineGateError(f"optim.gate_lr_scale = {scale!r}; give a finite number above 0 (1 = the backbone's rate).")
    if not isinstance(config["optim"]["nesterov"], bool):
        raise CosineGateError(f"optim.nesterov = {config['optim']['nesterov']!r}; it must be true or false.")
    subset = config["data"].get("subset")
    if subset is not None and (isinstance(subset, bool) or not isinstance(subset, int) or subset < 1):
        raise CosineGateError(f"data.subset = {subset!r}; give a whole number of images of at least 1, or leave it out.")
    if not 0.0 < config["gate"]["target"] <= 1.0:
        raise CosineGateError("gate.target is a compute ratio and must lie in (0, 1].")
    if not 0.0 <= config["gate"]["noise_end"] <= 1.0:
        raise CosineGateError("gate.noise_end scales the gate noise at the end of training and must lie in [0, 1].")
    _validate_methods(config)
    return config


def _validate_methods(config):
    """The per-block rates, batch-shaping, ungated-block and distillation settings."""
    from cosinegate.models.backbones import backbone_spec
    from cosinegate.models.ungated import resolve_ungated

    gate, blocks = config["gate"], len(backbone_spec(config["model"]["backbone"]).blocks)
    resolve_ungated(config["model"]["backbone"], config["model"]["ungated_blocks"])
    rates = gate["block_rates"]
    if rates is not None:
        values = rates if isinstance(rates, list) else [rates]
        if isinstance(rates, list) and len(rates) != blocks:
            raise CosineGateError(f"gate.block_rates has {len(rates)} entries but {config['model']['backbone']} has {blocks} "
                                  "blocks; give one rate per block or a single number.")
        if not all(isinstance(v, (int, float)) and 0.0 <= v <= 1.0 for v in values):
            raise CosineGateError("gate.block_rates are execution rates and must lie in [0, 1].")
    prior = gate["batch_shaping_prior"]
    if not (isinstance(prior, list) and len(prior) == 2 and all(isinstance(v, (int, float)) and v > 0 for v in prior)):
        raise CosineGateError(f"gate.batch_shaping_prior = {prior!r}; give the Beta prior as [a, b] with a, b > 0, e.g. [0.6, 0.4].")
    if config["distill"]["weight"] and not config["init_from"]:
        raise CosineGateError("distill.weight > 0 needs a teacher: pass --init-from CKPT (the dense checkpoint of phase one).")
    if not 0.0 <= config["distill"]["weight"] <= 1.0 or config["distill"]["temperature"] <= 0:
        raise CosineGateError("distill.weight must lie in [0, 1] and distill.temperature be positive.")
