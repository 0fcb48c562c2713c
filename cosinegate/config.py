"""Training configurations: defaults, YAML presets, validation and overrides."""

import copy
from pathlib import Path

from cosinegate.data.normalization import check_normalization
from cosinegate.errors import CosineGateError
from cosinegate.models.backbones import backbone_spec, default_image_size
from cosinegate.models.choices import MODES, block_indices
from cosinegate.models.ungated import resolve_ungated
from cosinegate.schema import number, shown, whole

DEFAULTS = {
    "name": "custom",
    "seed": 0,
    "model": {
        "backbone": "resnet20", "mode": "predictive", "drop_blocks": [], "gate_hidden": 16, "open_bias": 3.0,
        "ungated_blocks": [],  # blocks that keep no gate (always run): 0-based indices, or "stage_first"
    },
    # two phases: initialise from this CosineGate checkpoint (cosinegate train --init-from); gates stay freshly initialised
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
        "noise_epochs": 0,  # the noise reaches noise_end after this many epochs (a float below 1: a fraction); 0 = at the end
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
# the presets are package data (installed with the package; setup.cfg [options.package_data]); the checkout's
# train/configs is a link to this folder. A path next to __file__, not importlib.resources.files (Python 3.9+).
CONFIG_DIR = Path(__file__).resolve().parent / "presets"


def preset_names():
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def resolve_config_path(name_or_path):
    path = Path(name_or_path)
    if path.is_file():
        return path
    if name_or_path in preset_names():  # a preset's name only: "../x" does not reach past the presets folder
        return CONFIG_DIR / f"{name_or_path}.yaml"
    if path.is_dir():
        raise CosineGateError(f"config {name_or_path} is a folder; pass a YAML file or a preset name.")
    if path.suffix in (".yaml", ".yml") or len(path.parts) > 1:
        raise CosineGateError(f"config file {name_or_path} not found; fix the path, or name a preset: "
                              f"{', '.join(preset_names())}.")
    raise CosineGateError(
        f"unknown config or preset {name_or_path!r}; use a YAML path or one of: {', '.join(preset_names())} "
        f"(e.g. --config balanced)."
    )


MAX_CONFIG_BYTES = 1 << 20


def _strict_loader():
    """yaml.SafeLoader that refuses aliases (a few lines can expand to 10^9 leaves) and duplicate keys."""
    import yaml

    class StrictLoader(yaml.SafeLoader):
        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                mark = self.peek_event().start_mark
                raise yaml.YAMLError(f"line {mark.line + 1}: an alias (*name); configs take plain values, write them out")
            return super().compose_node(parent, index)

        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                if isinstance(key, (str, int, float, bool)) and key in seen:
                    raise yaml.YAMLError(f"line {key_node.start_mark.line + 1}: key {key!r} given twice; keep one")
                seen.add(key) if isinstance(key, (str, int, float, bool)) else None
            return super().construct_mapping(node, deep)

    return StrictLoader


def read_yaml(path):
    """The YAML document at `path`, read without aliases or duplicate keys, or a one-line CosineGateError."""
    import yaml

    try:
        with open(path, "rb") as handle:  # at most one byte past the limit, however large the file
            raw = handle.read(MAX_CONFIG_BYTES + 1)
        if len(raw) > MAX_CONFIG_BYTES:
            raise CosineGateError(f"config {path} is over {MAX_CONFIG_BYTES} bytes; a config is a few lines of YAML.")
        data = yaml.load(raw.decode("utf-8"), Loader=_strict_loader())  # noqa: S506 - a SafeLoader subclass
    except UnicodeDecodeError as exc:
        raise CosineGateError(f"config {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8.") from None
    except OSError as exc:
        raise CosineGateError(f"cannot read config {path} ({exc.strerror}).") from None
    except (yaml.YAMLError, RecursionError, ValueError) as exc:  # ValueError: an int over Python's digit limit
        problem = " ".join(str(exc).split())[:300]
        raise CosineGateError(f"config {path} is not valid YAML ({problem}).") from None
    try:
        where, value = _not_plain(data)
    except RecursionError:
        raise CosineGateError(f"config {path} is nested too deep; a config is a few sections of plain values.") from None
    if where is not None:
        raise CosineGateError(f"config {path}: {where or 'the document'} is a YAML {type(value).__name__} "
                              f"({shown(value, 40)}); a config holds numbers, text, true/false, lists and mappings only.")
    return data


def _not_plain(value, where=""):
    """(key path, value) of the first value in a loaded YAML document that is not plain data (a !!set, a
    timestamp, !!binary: SafeLoader builds them), else (None, None)."""
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    elif value is None or isinstance(value, (str, int, float, bool)):
        return None, None
    else:
        return where, value
    for key, item in items:
        if not (key is None or isinstance(key, (str, int, float, bool))):
            return f"{where}[key {shown(key, 40)}]", key
        found = _not_plain(item, f"{where}.{key}" if where else str(key))
        if found[0] is not None:
            return found
    return None, None


def load_config(name_or_path):
    """Load a preset name or YAML path, merged over DEFAULTS and validated."""
    path = resolve_config_path(name_or_path)
    overrides = read_yaml(path) or {}
    if not isinstance(overrides, dict):
        raise CosineGateError(f"config {path} holds a YAML {type(overrides).__name__}, not a mapping of sections "
                              f"(model:, data:, optim:, gate:); start from one of the presets in {CONFIG_DIR}.")
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


# (section, key): (kind, low, high, low_open, high_open, note); kind "int" or "num"; None = unbounded
RANGES = {
    (None, "seed"): ("int", 0, 2**32 - 1, False, False, "a seed numpy and torch both take"),
    ("model", "gate_hidden"): ("int", 1, 4096, False, False, "units of the gate's hidden layer"),
    ("model", "open_bias"): ("num", -100, 100, False, False, "the gate logit's starting bias"),
    ("distill", "weight"): ("num", 0, 1, False, False, "a blend weight"),
    ("distill", "temperature"): ("num", 0, 1000, True, False, "a softmax temperature"),
    ("gate", "target"): ("num", 0, 1, True, False, "a compute ratio"),
    ("gate", "penalty"): ("num", 0, None, False, False, "a loss weight"),
    ("gate", "ramp_epochs"): ("num", 0, 100000, False, False, "epochs, or a fraction of the schedule below 1"),
    ("gate", "budget_spread"): ("num", 0, 1, False, False, "a spread of compute ratios"),
    ("gate", "temperature_start"): ("num", 0, 1000, True, False, "a gate temperature"),
    ("gate", "temperature_end"): ("num", 0, 1000, True, False, "a gate temperature"),
    ("gate", "noise_end"): ("num", 0, 1, False, False, "a noise scale"),
    ("gate", "noise_epochs"): ("num", 0, 100000, False, False, "epochs, or a fraction of the schedule below 1"),
    ("gate", "min_rate"): ("num", 0, 1, False, True, "an execution rate"),
    ("gate", "min_rate_weight"): ("num", 0, None, False, False, "a loss weight"),
    ("gate", "cir_weight"): ("num", 0, None, False, False, "a loss weight"),
    ("gate", "consistency_weight"): ("num", 0, None, False, False, "a loss weight"),
    ("gate", "block_rate_weight"): ("num", 0, None, False, False, "a loss weight"),
    ("gate", "batch_shaping_weight"): ("num", 0, None, False, False, "a loss weight"),
    ("gate", "batch_shaping_end"): ("num", 0, None, False, False, "a weight multiplier"),
    ("gate", "gate_ramp_epochs"): ("num", 0, 100000, False, False, "epochs, or a fraction of the schedule below 1"),
    ("optim", "epochs"): ("int", 1, 100000, False, False, "a number of epochs"),
    ("optim", "batch_size"): ("int", 1, 1 << 20, False, False, "images per batch"),
    ("optim", "lr"): ("num", 0, None, True, False, "a learning rate"),
    ("optim", "momentum"): ("num", 0, 1, False, True, "SGD momentum"),
    ("optim", "label_smoothing"): ("num", 0, 1, False, True, "a smoothing fraction"),
    ("optim", "weight_decay"): ("num", 0, None, False, False, "a decay factor"),
    ("optim", "t0"): ("int", 1, 100000, False, False, "the first restart period in epochs"),
    ("optim", "t_mult"): ("num", 1, 1000, False, False, "the restart period's growth factor"),
    ("optim", "warmup_epochs"): ("num", 0, 100000, False, False, "epochs of learning-rate warmup"),
    ("optim", "grad_clip"): ("num", 0, None, False, False, "a gradient norm (0 = off)"),
    ("data", "val_fraction"): ("num", 0, 1, False, True, "a held-out fraction"),
}
TYPES = {("model", "backbone"): str, ("model", "mode"): str, ("data", "source"): str, ("data", "augment"): bool,
         ("gate", "paper_exact"): bool, ("optim", "nesterov"): bool, ("gate", "budget"): str, ("optim", "schedule"): str}


def _check_ranges(config):
    """Every number in RANGES of its kind and within its bounds, every key in TYPES of its type: one line each."""
    for (section, key), (kind, low, high, low_open, high_open, note) in RANGES.items():
        value = config[key] if section is None else config[section][key]
        name = key if section is None else f"{section}.{key}"
        if not (whole(value) if kind == "int" else whole(value) or isinstance(value, float)) or (
                isinstance(value, float) and not number(value)):
            raise CosineGateError(f"{name} = {shown(value)}; it must be a {'whole' if kind == 'int' else 'finite'} number ({note}).")
        if (not number(value)  # an int too large for a float
                or (low is not None and (value <= low if low_open else value < low))
                or (high is not None and (value >= high if high_open else value > high))):
            span = f"{'(' if low_open else '['}{low}, {'inf' if high is None else high}{')' if high_open or high is None else ']'}"
            raise CosineGateError(f"{name} = {shown(value)} is out of range; give a number in {span} ({note}).")
    for (section, key), kind in TYPES.items():
        if not isinstance(config[section][key], kind):
            raise CosineGateError(f"{section}.{key} = {config[section][key]!r}; it must be a {kind.__name__}.")
    root = config["data"]["root"]
    if root is not None and not isinstance(root, str):
        raise CosineGateError(f"data.root = {root!r}; give a folder path as text, or leave it out.")
    if config["init_from"] is not None and not isinstance(config["init_from"], str):
        raise CosineGateError(f"init_from = {config['init_from']!r}; give a checkpoint path as text, or leave it out.")


def validate(config):
    """Check values a config cannot run with; return the config."""
    data = config["data"]
    _check_ranges(config)
    model = config["model"]
    if model.get("drop_blocks"):
        block_indices("model.drop_blocks", model["drop_blocks"], model["backbone"], len(backbone_spec(model["backbone"]).blocks))
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
    if not number(lr) or lr <= 0:
        raise CosineGateError(f"optim.lr = {lr!r}; the learning rate must be a finite number above 0.")
    smoothing = config["optim"]["label_smoothing"]
    if not (isinstance(smoothing, (int, float)) and 0.0 <= smoothing < 1.0):
        raise CosineGateError(f"optim.label_smoothing = {smoothing!r}; give a number in [0, 1), e.g. 0.1.")
    scale = config["optim"]["gate_lr_scale"]
    if not (number(scale) and scale > 0):
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
    gate, blocks = config["gate"], len(backbone_spec(config["model"]["backbone"]).blocks)
    resolve_ungated(config["model"]["backbone"], config["model"]["ungated_blocks"])
    rates = gate["block_rates"]
    if rates is not None:
        values = rates if isinstance(rates, list) else [rates]
        if isinstance(rates, list) and len(rates) != blocks:
            raise CosineGateError(f"gate.block_rates has {len(rates)} entries but {config['model']['backbone']} has {blocks} "
                                  "blocks; give one rate per block or a single number.")
        if not all(number(v) and 0.0 <= v <= 1.0 for v in values):
            raise CosineGateError("gate.block_rates are execution rates and must lie in [0, 1].")
    prior = gate["batch_shaping_prior"]
    if not (isinstance(prior, list) and len(prior) == 2 and all(number(v) and v > 0 for v in prior)):
        raise CosineGateError(f"gate.batch_shaping_prior = {shown(prior)}; give the Beta prior as [a, b] with finite a, b > 0, "
                              "e.g. [0.6, 0.4].")
    if config["distill"]["weight"] and not config["init_from"]:
        raise CosineGateError("distill.weight > 0 needs a teacher: pass --init-from CKPT (the dense checkpoint of phase one).")
    distill = config["distill"]
    if not (number(distill["weight"]) and 0.0 <= distill["weight"] <= 1.0 and number(distill["temperature"])
            and distill["temperature"] > 0):
        raise CosineGateError("distill.weight must lie in [0, 1] and distill.temperature be positive.")
