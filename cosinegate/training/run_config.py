"""A run's config: a preset (or YAML file) with plain overrides, checked; what cosinegate train's flags set."""

from cosinegate.errors import CosineGateError

# override name -> (section, key) of the config it sets
OVERRIDES = {
    "backbone": ("model", "backbone"),
    "mode": ("model", "mode"),
    "data": ("data", "source"),
    "data_root": ("data", "root"),
    "subset": ("data", "subset"),
    "image_size": ("data", "image_size"),
    "epochs": ("optim", "epochs"),
    "batch_size": ("optim", "batch_size"),
    "lr": ("optim", "lr"),
    "schedule": ("optim", "schedule"),
    "target": ("gate", "target"),
    "block_rates": ("gate", "block_rates"),
    "distill": ("distill", "weight"),
}


def parse_drop_blocks(text):
    """'2,5,8' -> [2, 5, 8]; 'from:CKPT' -> the blocks whose stored held-out skip rate makes them always skipped."""
    if text.startswith("from:"):
        from cosinegate.blockkinds import block_classes
        from cosinegate.training.checkpoint import load_checkpoint

        rates = load_checkpoint(text[5:]).get("skip_rates")
        if rates is None:
            raise CosineGateError(f"{text[5:]} stores no skip rates; pass the indices, e.g. --drop-blocks 2,5,8.")
        return [i for i, kind in enumerate(block_classes(rates)) if kind == "always_skipped"]
    try:
        return [int(b) for b in text.split(",") if b.strip()]
    except ValueError as exc:
        raise CosineGateError(f"--drop-blocks {text!r}: expected comma-separated block indices or from:CKPT.") from exc


def check_loss_overrides(name, config, target=None, block_rates=None):
    """--target and --block-rates set the targets of two losses; a config whose loss is off would ignore them."""
    gate = config["gate"]
    if target is not None and not gate["penalty"]:
        raise CosineGateError(f"--target is the compute penalty's target, and {name} has no compute penalty "
                              "(gate.penalty 0: it trains per-block rates); use --block-rates R, or a preset with the "
                              "penalty (aggressive, conservative, paper or any balanced*).")
    if block_rates is not None and not gate["block_rate_weight"]:
        raise CosineGateError(f"--block-rates sets per-block execution rates, which {name} does not train toward "
                              "(gate.block_rate_weight 0); use --config rates, shaping or two-phase, or --target for the "
                              "compute penalty.")


def run_config(name, normalization=None, drop_blocks=None, seed=None, init_from=None, **overrides):
    """The validated config of preset or file `name` with `overrides` (OVERRIDES' names; None leaves a value as it
    is), `normalization` (the --normalization spelling), `drop_blocks` ('2,5,8' or 'from:CKPT'), `seed`, `init_from`."""
    from cosinegate.config import load_config, validate

    unknown = sorted(set(overrides) - set(OVERRIDES))
    if unknown:
        raise TypeError(f"run_config() got unknown overrides {unknown}")
    config = load_config(name)
    check_loss_overrides(name, config, overrides.get("target"), overrides.get("block_rates"))
    for key, value in overrides.items():
        if value is not None:
            section, field = OVERRIDES[key]
            config[section][field] = value
    if normalization is not None:
        from cosinegate.data.normalization import parse_flag

        config["data"]["normalization"] = parse_flag(normalization)
    if drop_blocks is not None:
        config["model"]["drop_blocks"] = parse_drop_blocks(drop_blocks)
    if seed is not None:
        config["seed"] = seed
    if init_from is not None:
        config["init_from"] = init_from
    return validate(config)
