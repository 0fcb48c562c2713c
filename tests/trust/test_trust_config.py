"""YAML configs and training flags from outside: read without aliases or duplicate keys, every key typed and ranged.

Each bad config is refused by load_config/validate in one line naming the key, the value and what is
allowed, before any data is read; train.py exits 2 with nothing written. The alias bomb is refused in
well under a second (it used to expand to 10^9 leaves).
"""


import pytest
from conftest import within
from scripts_in_process import run

from cosinegate.config import load_config, validate
from cosinegate.errors import CosineGateError

BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n" for p, c in zip("abcdefgh", "bcdefghi")
) + "name: *i\n"

BAD = {  # label: (YAML text, part of the one-line message)
    "alias bomb in a string field": (BOMB, "an alias"),
    "a plain alias": ("optim: &o {epochs: 1}\ngate: *o\n", "an alias"),
    "duplicated key": ("optim:\n  lr: 0.1\n  lr: 0.5\n", "key 'lr' given twice"),
    "duplicated section": ("optim: {lr: 0.1}\noptim: {lr: 0.5}\n", "key 'optim' given twice"),
    "cosine_restarts t0 0": ("optim: {schedule: cosine_restarts, t0: 0}\n", "optim.t0 = 0 is out of range"),
    "t_mult 0": ("optim: {schedule: cosine_restarts, t_mult: 0}\n", "optim.t_mult = 0 is out of range"),
    "val_fraction 1.5": ("data: {val_fraction: 1.5}\n", "data.val_fraction = 1.5 is out of range"),
    "val_fraction -0.5": ("data: {val_fraction: -0.5}\n", "data.val_fraction = -0.5 is out of range"),
    "gate_hidden 0": ("model: {gate_hidden: 0}\n", "model.gate_hidden = 0 is out of range"),
    "gate_hidden 1.5": ("model: {gate_hidden: 1.5}\n", "model.gate_hidden = 1.5; it must be a whole number"),
    "grad_clip -1": ("optim: {grad_clip: -1}\n", "optim.grad_clip = -1 is out of range"),
    "temperature_end 0": ("gate: {temperature_end: 0}\n", "gate.temperature_end = 0 is out of range"),
    "temperature_start -1": ("gate: {temperature_start: -1}\n", "gate.temperature_start = -1 is out of range"),
    "warmup_epochs -5": ("optim: {warmup_epochs: -5}\n", "optim.warmup_epochs = -5 is out of range"),
    "budget_spread -5": ("gate: {budget_spread: -5}\n", "gate.budget_spread = -5 is out of range"),
    "momentum -1": ("optim: {momentum: -1}\n", "optim.momentum = -1 is out of range"),
    "momentum 1": ("optim: {momentum: 1}\n", "optim.momentum = 1 is out of range"),
    "weight_decay -1": ("optim: {weight_decay: -1}\n", "optim.weight_decay = -1 is out of range"),
    "seed 1.5": ("seed: 1.5\n", "seed = 1.5; it must be a whole number"),
    "seed 2**70": (f"seed: {2**70}\n", "is out of range"),
    "seed -1": ("seed: -1\n", "seed = -1 is out of range"),
    "backbone a list": ("model: {backbone: [resnet20]}\n", "model.backbone = ['resnet20']; it must be a str"),
    "image_size 100000": ("data: {image_size: 100000}\n", "--image-size 100000 is too large"),
    "image_size 'abc'": ("data: {image_size: abc}\n", "data.image_size = 'abc'"),
    "lr inf": ("optim: {lr: .inf}\n", "optim.lr = inf; it must be a finite number"),
    "penalty nan": ("gate: {penalty: .nan}\n", "gate.penalty = nan; it must be a finite number"),
    "epochs 10**9": ("optim: {epochs: 1000000000}\n", "optim.epochs = 1000000000 is out of range"),
    "distill temperature 0": ("distill: {temperature: 0}\n", "distill.temperature = 0 is out of range"),
    "min_rate 1": ("gate: {min_rate: 1}\n", "gate.min_rate = 1 is out of range"),
    "augment 'yes please'": ("data: {augment: yes please}\n", "must be true or false"),
    "root a number": ("data: {root: 5}\n", "data.root = 5"),
    "init_from a list": ("init_from: [a]\n", "init_from = ['a']"),
    "arrays nested 10000 deep": ("name: " + "[" * 10000 + "]" * 10000 + "\n", "not valid YAML"),
    "not UTF-8": (b"name: \xff\xfe\n", "not UTF-8 text"),
    "a python object tag": ("name: !!python/object/apply:os.system [echo pwned]\n", "not valid YAML"),
    "seed 1.0e+400": ("seed: 1.0e+400\n", "seed = inf; it must be a whole number"),
    "batch_shaping_prior infinite": ("gate: {batch_shaping_prior: [.inf, .inf]}\n", "batch_shaping_prior = [inf, inf]"),
    "batch_shaping_prior 10**400": (f"gate: {{batch_shaping_prior: [{10**400}, 1]}}\n", "batch_shaping_prior = [100000"),
    "block_rates true": ("gate: {block_rates: true}\n", "block_rates are execution rates"),
    # attacker review: SafeLoader builds sets, dates and bytes; a set trained an epoch, then failed to save
    "drop_blocks a set": ("model:\n  drop_blocks: !!set {1: null}\n", "model.drop_blocks is a YAML set ({1})"),
    "epochs a date": ("optim: {epochs: 2024-01-01}\n", "optim.epochs is a YAML date"),
    "a binary document": ("!!binary aGVsbG8=\n", "the document is a YAML bytes"),
}


@pytest.mark.parametrize("label", sorted(BAD))
def test_a_bad_config_is_refused_in_one_line(tmp_path, label):
    text, message = BAD[label]
    path = tmp_path / "c.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with within(5, cpu=True), pytest.raises(CosineGateError) as info:  # the parser works: no blocked read to catch
        validate(load_config(path))
    assert message in str(info.value) and "\n" not in str(info.value), str(info.value)


def test_every_preset_still_validates():
    from cosinegate.config import preset_names

    for name in preset_names():
        config = load_config(name)
        config["init_from"] = config["init_from"] or "teacher.pt"  # two-phase presets name their teacher on the command line
        validate(config)


@pytest.mark.parametrize("label, argv, message", [
    ("--seed 2**70", ["--seed", str(2**70)], "seed = 1180591620717411303424 is out of range"),
    ("--image-size 100000", ["--image-size", "100000"], "--image-size 100000 is too large"),
    ("YAML t0 0", ["--config", "T0"], "optim.t0 = 0 is out of range"),
])
def test_train_refuses_before_reading_data_or_writing(tmp_path, label, argv, message):
    (tmp_path / "t0.yaml").write_text("optim: {schedule: cosine_restarts, t0: 0, epochs: 1}\n")
    argv = [str(tmp_path / "t0.yaml") if a == "T0" else a for a in argv]
    code, _, err = run("train/train.py", "--data", "synthetic", "--epochs", "1", *argv, "--out", tmp_path / "run")
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and "Traceback" not in err and len(lines) == 1 and message in lines[0], err
    assert not (tmp_path / "run").exists()


def test_a_huge_config_is_refused_without_reading_it_whole(tmp_path):
    """read_yaml read the whole file before cutting it to the limit: a 256 MiB file cost 256 MiB."""
    import tracemalloc

    from cosinegate.config import MAX_CONFIG_BYTES, read_yaml

    huge = tmp_path / "huge.yaml"
    with open(huge, "wb") as handle:
        handle.truncate(256 << 20)  # sparse: no disk used
    tracemalloc.start()
    try:
        with pytest.raises(CosineGateError, match=f"over {MAX_CONFIG_BYTES} bytes"):
            read_yaml(huge)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * MAX_CONFIG_BYTES, peak
