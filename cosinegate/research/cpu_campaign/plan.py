"""What the campaign trains: its protocol (campaign.json, fixed when it starts) and the runs it plans from it.

Contenders per seed, each fine-tuned from that seed's teacher for the same epochs, lr, schedule and distillation:
  static-dK       the teacher with K blocks removed (static_choice: the removal that costs the least held-out top-1)
  METHOD-rR       gated (predictive gates; rates | shaping | two-phase) at per-block execution rate R
a dense reference of another depth where the protocol names one, and, once every fine-tune is done (unless the
protocol says "controls": false), one control: the leading gated contender trained from scratch for teacher +
fine-tune epochs.
"""

import copy
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from cosinegate.artifacts import atomic_write_json, read_json
from cosinegate.config import load_config, preset_names, validate
from cosinegate.errors import CosineGateError
from cosinegate.research.cpu_campaign.state import run_state
from cosinegate.research.experiments import RunSpec, collect

TEACHER_PRESET = "teacher"
PROTOCOL = {  # campaign.json's content when a campaign starts; a running campaign keeps the one it started with
    "backbone": "resnet20",
    "seeds": 2,
    "data": {"source": "imagefolder", "root": "../shared/data/cifar10-jpeg", "subset": None},
    "teacher_epochs": 50,
    "finetune": {"epochs": 15, "lr": 0.02, "schedule": "cosine", "warmup_epochs": 0, "nesterov": True,
                 "gate_lr_scale": 5.0, "distill": {"weight": 0.5, "temperature": 4.0},
                 # gated contenders only, over their preset's gate section: the noise ends halfway, so the second half
                 # trains on the routing that is deployed (with noise to the end, v1's gates committed in the last epoch)
                 "gate": {"noise_epochs": 0.5, "block_rate_weight": 8.0}},
    "static_removals": [1, 2, 3],
    "methods": ["rates", "shaping", "two-phase"],
    "rates": [0.55, 0.75],
}
# issue 21's fallback, since ResNet-20's static curve is flat (no headroom): the same recipe on ResNet-56 against a
# dense ResNet-32 (69M MACs); the gated runs aim below 69M (24 of 27 blocks gated at rate 0.45: about 63M), the static
# baselines remove 12 blocks (ResNet-32's count, 69M) and 15 (55M: the curve reaches below the gated runs); no
# control (65 gated ResNet-56 epochs per seed is beyond the budget)
RESNET56_PROTOCOL = {**PROTOCOL, "backbone": "resnet56", "static_removals": [12, 15], "methods": ["two-phase", "shaping"],
                     "rates": [0.45], "reference": {"backbone": "resnet32"}, "controls": False, "static_choice_images": 1000}


@dataclass
class Run:
    name: str
    group: str  # what the results table aggregates over seeds: teacher, static-d2, rates-r0.55, control-...
    seed: int
    config: dict = None  # the full cosinegate train config (None: not plannable yet, e.g. static before its teacher)
    needs: list = field(default_factory=list)  # runs that must be done first
    outline: tuple = None  # (epochs, kind) of a run not plannable yet, for the hours-left estimate (report.kind)


def in_order(plans):
    """The (folder, run) pairs of ``plans`` [(folder, runs)] in the order the scheduler starts them: every campaign's
    runs in folder order, every campaign's controls last."""
    queue = [(run.group.startswith("control"), rank, i, folder, run)
             for rank, (folder, runs) in enumerate(plans) for i, run in enumerate(runs)]
    return [(folder, run) for *_, folder, run in sorted(queue, key=lambda q: q[:3])]


def load_protocol(folder, protocol=None):
    """campaign.json of `folder` (written from `protocol` or PROTOCOL when the campaign is new), checked."""
    path = Path(folder) / "campaign.json"
    if path.is_file():
        stored = read_json(path, "campaign.json")
        problem = protocol_problem(stored)
        if problem:
            raise CosineGateError(f"{path} {problem}; restore the committed campaign.json (git checkout) or start a "
                                  "new campaign folder.")
        if protocol is not None and stored != protocol:
            raise CosineGateError(f"{path} holds another protocol than the one asked for; continue it as it is or "
                                  "start a new campaign folder.")
        return stored

    Path(folder).mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, protocol or PROTOCOL)
    return protocol or PROTOCOL


def _whole(value, low=0):
    return type(value) is int and low <= value <= 10**6


def _number(value, low=0.0, high=math.inf):
    return type(value) in (int, float) and math.isfinite(value) and low <= value <= high


def _word(value):
    return isinstance(value, str) and re.fullmatch(r"[a-z0-9][a-z0-9-]{0,40}", value) is not None


PROTOCOL_CHECKS = {  # key: (test, what it must be); run names, and so folders under runs/, are made of these values
    "backbone": (_word, "a backbone name"),
    "seeds": (lambda v: _whole(v, 1) and v <= 100, "a whole number from 1 to 100"),
    "data": (lambda v: isinstance(v, dict) and isinstance(v.get("source"), str) and isinstance(v.get("root"), (str, type(None)))
             and (v.get("subset") is None or _whole(v["subset"], 1)), "{source, root, subset}: text, a folder or null, a count or null"),
    "teacher_epochs": (lambda v: _whole(v, 1), "a whole number of epochs"),
    "finetune": (lambda v: isinstance(v, dict) and _whole(v.get("epochs"), 1) and _number(v.get("lr"), 1e-9)
                 and isinstance(v.get("schedule"), str) and _number(v.get("warmup_epochs"))
                 and isinstance(v.get("nesterov"), bool) and _number(v.get("gate_lr_scale"))
                 and isinstance(v.get("distill"), dict) and isinstance(v.get("gate", {}), dict),
                 "the fine-tuning recipe (epochs, lr, schedule, warmup_epochs, nesterov, gate_lr_scale, distill, gate)"),
    "static_removals": (lambda v: isinstance(v, list) and all(_whole(k, 1) for k in v), "a list of block counts"),
    "methods": (lambda v: isinstance(v, list) and all(m in preset_names() and m not in ("dense", TEACHER_PRESET) for m in v),
                "a list of the gated presets' names"),
    "rates": (lambda v: isinstance(v, list) and all(_number(r, 1e-6, 1.0) for r in v), "a list of rates in (0, 1]"),
}
OPTIONAL_CHECKS = {
    "reference": (lambda v: v is None or (isinstance(v, dict) and _word(v.get("backbone"))), "{backbone: name}"),
    "controls": (lambda v: isinstance(v, bool), "true or false"),
    "static_choice_images": (lambda v: _whole(v, 1), "a whole number of images"),
}


def protocol_problem(protocol):
    """What is wrong with a campaign.json's content (None when nothing is)."""
    if not isinstance(protocol, dict):
        return "is not a JSON object"
    for key, (test, what) in {**PROTOCOL_CHECKS, **OPTIONAL_CHECKS}.items():
        if key not in protocol:
            if key in PROTOCOL_CHECKS:
                return f"has no {key!r}"
            continue
        try:
            ok = test(protocol[key])
        except (TypeError, OverflowError):  # a value of another kind where a comparison was made; 10**400
            ok = False
        if not ok:
            return f"has {key} {str(protocol[key])[:60]!r}, not {what}"
    return None


def _base(protocol, preset, seed):
    config = load_config(preset)
    config["seed"] = seed
    config["model"]["backbone"] = protocol["backbone"]
    config["data"].update(source=protocol["data"]["source"], root=protocol["data"]["root"], subset=protocol["data"]["subset"])
    return config


def teacher_config(protocol, seed):
    config = _base(protocol, TEACHER_PRESET, seed)
    config["optim"]["epochs"] = protocol["teacher_epochs"]
    return validate(config)


def finetune_config(protocol, preset, seed, teacher, name, init, drop_blocks=None, rate=None):
    """A contender's config: its preset's model and gate settings, the campaign's fine-tuning recipe."""
    config = _base(protocol, preset, seed)
    ft = protocol["finetune"]
    config["name"] = name
    config["optim"].update(epochs=ft["epochs"], lr=ft["lr"], schedule=ft["schedule"], warmup_epochs=ft["warmup_epochs"],
                           nesterov=ft["nesterov"], gate_lr_scale=ft["gate_lr_scale"],
                           batch_size=teacher["optim"]["batch_size"], weight_decay=teacher["optim"]["weight_decay"],
                           momentum=teacher["optim"]["momentum"], label_smoothing=teacher["optim"]["label_smoothing"])
    config["distill"] = dict(ft["distill"])
    config["init_from"] = init  # the teacher's last.pt
    if drop_blocks is not None:
        config["model"]["drop_blocks"] = sorted(drop_blocks)
    if rate is not None:
        config["gate"]["block_rates"] = rate
    if config["model"]["mode"] != "none":
        config["gate"].update(ft.get("gate", {}))
    return validate(config)


def control_config(protocol, winner, seed):
    """The winning gated contender trained from scratch with the teacher's recipe for teacher + fine-tune epochs."""
    config = copy.deepcopy(winner)
    teacher = teacher_config(protocol, seed)
    config.update(seed=seed, init_from=None, name=f"control-{winner['name'].rsplit('-s', 1)[0]}")
    config["distill"]["weight"] = 0.0
    config["optim"] = dict(teacher["optim"], epochs=teacher["optim"]["epochs"] + protocol["finetune"]["epochs"])
    return config


def reference_config(protocol, seed):
    """The protocol's dense reference network (another depth) trained from scratch with the teacher's recipe for
    teacher + fine-tune epochs, the training every contender has had in all."""
    config = teacher_config(dict(protocol, backbone=protocol["reference"]["backbone"]), seed)
    config["name"] = f"reference-{protocol['reference']['backbone']}"
    config["optim"]["epochs"] = protocol["teacher_epochs"] + protocol["finetune"]["epochs"]
    return validate(config)


def plan(folder, protocol):
    """Every run of the campaign in priority order: seed by seed its teacher, its dense reference (when the protocol
    has one) and its fine-tunes; then the controls (unless the protocol says "controls": false)."""
    folder = Path(folder)
    runs, finetunes = [], []
    for s in range(protocol["seeds"]):
        teacher = Run(f"teacher-s{s}", "teacher", s, teacher_config(protocol, s))
        runs.append(teacher)
        if protocol.get("reference"):
            config = reference_config(protocol, s)
            runs.append(Run(f"{config['name']}-s{s}", config["name"], s, config))
        init = str(folder / "runs" / teacher.name / "last.pt")
        choice = read_choice(folder, s)
        for k in protocol["static_removals"]:
            name = f"static-d{k}-s{s}"
            config = None
            if choice is not None:
                config = finetune_config(protocol, "dense", s, teacher.config, name, init, drop_blocks=choice["order"][:k])
            outline = (protocol["finetune"]["epochs"], (protocol["backbone"], "dense", True))
            finetunes.append(Run(name, f"static-d{k}", s, config, [teacher.name], outline))
        for rate in protocol["rates"]:
            for method in protocol["methods"]:
                name = f"{method}-r{rate}-s{s}"
                config = finetune_config(protocol, method, s, teacher.config, name, init, rate=rate)
                finetunes.append(Run(name, f"{method}-r{rate}", s, config, [teacher.name]))
        runs += [r for r in finetunes if r.seed == s]
    if not protocol.get("controls", True):
        return runs
    names = [r.name for r in finetunes]
    winner = winner_run(folder, runs) if finetunes_done(folder, runs) else None
    for s in range(protocol["seeds"]):
        config = control_config(protocol, winner.config, s) if winner else None
        group = config["name"] if config else "control"
        outline = (protocol["teacher_epochs"] + protocol["finetune"]["epochs"], (protocol["backbone"], "gated", False))
        runs.append(Run(f"{group}-s{s}", group, s, config, names, outline))
    return runs


def finetunes_done(folder, runs):
    """Whether every fine-tuned contender among `runs` has finished (teachers, references and controls aside)."""
    return all(run_state(Path(folder) / "runs" / r.name) == "done" for r in runs
               if r.group != "teacher" and not r.group.startswith(("control", "reference-")))


def read_choice(folder, seed):
    path = Path(folder) / f"static-choice-s{seed}.json"
    if not path.is_file():
        return None

    choice = read_json(path, "static block choice")
    if not isinstance(choice, dict) or not isinstance(choice.get("order"), list) or not all(
            _whole(b) for b in choice["order"]):
        raise CosineGateError(f"{path} holds no block order (a list of block indices); delete it: the campaign chooses "
                              "again.")
    return choice


def winner_run(folder, runs, rows=None):
    """The finished run (seed 0 when it has finished) of the gated group with the largest gain over the static
    curve (if none lies inside the curve's MAC range: the highest top-1); None before any gated run has finished.
    rows: table(folder, runs) when the caller has it."""
    rows = {r["preset"]: r for r in (table(folder, runs) if rows is None else rows)
            if r["mode"] != "none" and not r["preset"].startswith("control")}
    if not rows:
        return None
    inside = [g for g, r in rows.items() if r.get("gain_vs_static") is not None]
    best = max(inside, key=lambda g: rows[g]["gain_vs_static"]) if inside else max(rows, key=lambda g: rows[g]["top1_mean"])
    finished = [r for r in runs if r.group == best and run_state(Path(folder) / "runs" / r.name) == "done"]
    return min(finished, key=lambda r: r.seed)  # seed 0 when it has finished


def table(folder, runs):
    """experiments.collect's rows for the campaign's finished runs, compared with the static curve."""
    specs = [RunSpec(r.name, r.group, "resnet20" if r.config is None else r.config["model"]["backbone"], r.seed) for r in runs]
    return collect(Path(folder), specs)
