"""Issue 21's campaign: a dense teacher per seed, then every contender fine-tuned from it with one recipe.

The state lives in one folder (committed to the repository between working stretches): `campaign.json` (the
protocol, fixed when the campaign starts), `static-choice-sN.json` (which blocks the static baselines remove)
and `runs/NAME/` (train/train.py run folders). A run in progress keeps last.pt and best.pt, so train.py
--resume continues it bit-exact; a finished run keeps its summary, metrics, curves and a model-only last.pt.
Contenders per seed, each fine-tuned from that seed's teacher for the same epochs, lr, schedule and
distillation:
  static-dK       the teacher with K blocks removed (greedy: the removal that costs the least held-out top-1)
  METHOD-rR       gated (predictive gates; rates | shaping | two-phase) at per-block execution rate R
and, once every fine-tune is done, one control: the winning gated contender trained from scratch for
teacher + fine-tune epochs.
"""

import contextlib
import copy
import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from cosinegate.artifacts import atomic_write_json, atomic_write_text, folder_lock, read_json
from cosinegate.config import load_config, validate
from cosinegate.data import balanced_subset, load_dataset, split_holdout
from cosinegate.errors import CosineGateError
from cosinegate.evaluation import evaluate
from cosinegate.models import build_model
from cosinegate.research import TRAIN_COMMAND, child_env, winner_check
from cosinegate.research.experiments import RunSpec, collect, pareto_plot, removal_order, results_markdown
from cosinegate.training.checkpoint import load_checkpoint, save_checkpoint
from cosinegate.training.loop import read_metrics

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
# dense ResNet-32 (69M MACs); the gated runs aim below 69M (24 of 27 blocks gated at rate 0.45: about 57M), the static
# baselines remove 12 blocks (ResNet-32's count, 69M) and 15 (55M: the curve reaches below the gated runs); no
# control (65 gated ResNet-56 epochs per seed is beyond the budget)
RESNET56_PROTOCOL = {**PROTOCOL, "backbone": "resnet56", "static_removals": [12, 15], "methods": ["two-phase", "shaping"],
                     "rates": [0.45], "reference": {"backbone": "resnet32"}, "controls": False, "static_choice_images": 1000}
WINNER_CHECK = "winner-check.json"  # the deployment goal's record (winner_check.check) of the leading gated run
START_MARGIN = 600  # seconds before the deadline after which no run is started (its first epoch would overrun)
# how runs execute, not what they learn (bench.txt, 1 thread, idle machine): dense 531 img/s with bf16 + channels_last +
# fused SGD (521 bf16 alone); gated 432 with bf16 alone (403 with channels_last + fused)
SPEED_FLAGS = {"none": ["--amp", "bf16", "--channels-last", "--fused"], "gated": ["--amp", "bf16"]}


@dataclass
class Run:
    name: str
    group: str  # what the results table aggregates over seeds: teacher, static-d2, rates-r0.55, control-...
    seed: int
    config: dict = None  # the full train.py config (None: not plannable yet, e.g. static before its teacher)
    needs: list = field(default_factory=list)  # runs that must be done first


def load_protocol(folder, protocol=None):
    """campaign.json of `folder` (written from `protocol` or PROTOCOL when the campaign is new)."""
    path = Path(folder) / "campaign.json"
    if path.is_file():
        stored = read_json(path, "campaign.json")
        if protocol is not None and stored != protocol:
            raise CosineGateError(f"{path} holds another protocol than the one asked for; continue it as it is or "
                                  "start a new campaign folder.")
        return stored

    Path(folder).mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, protocol or PROTOCOL)
    return protocol or PROTOCOL


def run_state(folder):
    folder = Path(folder)
    if (folder / "summary.json").is_file():
        return "done"
    return "partial" if (folder / "last.pt").is_file() else "new"


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
        choice = _read_choice(folder, s)
        for k in protocol["static_removals"]:
            name = f"static-d{k}-s{s}"
            config = None
            if choice is not None:
                config = finetune_config(protocol, "dense", s, teacher.config, name, init, drop_blocks=choice["order"][:k])
            finetunes.append(Run(name, f"static-d{k}", s, config, [teacher.name]))
        for rate in protocol["rates"]:
            for method in protocol["methods"]:
                name = f"{method}-r{rate}-s{s}"
                config = finetune_config(protocol, method, s, teacher.config, name, init, rate=rate)
                finetunes.append(Run(name, f"{method}-r{rate}", s, config, [teacher.name]))
        runs += [r for r in finetunes if r.seed == s]
    if not protocol.get("controls", True):
        return runs
    names = [r.name for r in finetunes]
    winner = _winner(folder, runs) if _finetunes_done(folder, runs) else None
    for s in range(protocol["seeds"]):
        config = control_config(protocol, winner.config, s) if winner else None
        group = config["name"] if config else "control"
        runs.append(Run(f"{group}-s{s}", group, s, config, names))
    return runs


def _finetunes_done(folder, runs):
    """Whether every fine-tuned contender among `runs` has finished (teachers, references and controls aside)."""
    return all(run_state(Path(folder) / "runs" / r.name) == "done" for r in runs
               if r.group != "teacher" and not r.group.startswith(("control", "reference-")))


def _read_choice(folder, seed):
    path = Path(folder) / f"static-choice-s{seed}.json"
    if not path.is_file():
        return None

    return read_json(path, "static block choice")


def _winner(folder, runs, rows=None):
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


def choose_static_blocks(folder, protocol, seed, device="cpu", log=print):
    """Greedy removal order from the finished teacher: each step removes the block whose removal (on top of the
    earlier ones, no fine-tuning) costs the least held-out top-1. Written to static-choice-sN.json."""
    teacher_path = Path(folder) / "runs" / f"teacher-s{seed}" / "last.pt"
    state = load_checkpoint(teacher_path)
    config = state["config"]
    data = config["data"]
    train, _ = load_dataset(data["source"], data["root"], allow_download=False, image_size=data["image_size"], training=True)
    _, held_out = split_holdout(train, data["val_fraction"], seed=config["seed"])  # the teacher's own held-out split
    held_out = held_out.cropped(data["image_size"])
    if protocol.get("static_choice_images"):  # a deep backbone's many removals: a class-balanced part of the split
        held_out = balanced_subset(held_out, protocol["static_choice_images"])

    def top1(drops):
        model = build_model(dict(config["model"], drop_blocks=drops), num_classes=state["num_classes"], image_size=data["image_size"])
        model.load_state_dict({k: v for k, v in state["model"].items() if k in model.state_dict()})
        model.normalization = state["normalization"]
        return evaluate(model.to(device).eval(), held_out, device=device)["top1"]

    order, steps = [], [{"removed": [], "held_out_top1": top1([])}]
    candidates = removal_order(protocol["backbone"])
    for _ in range(max(protocol["static_removals"])):
        scores = {b: top1(sorted(order + [b])) for b in candidates if b not in order}
        best = max(scores, key=lambda b: (scores[b], -b))
        order.append(best)
        steps.append({"removed": sorted(order), "held_out_top1": scores[best], "candidates": {str(k): v for k, v in scores.items()}})
        log(f"teacher-s{seed}: removing block {best} next costs the least held-out top-1 ({scores[best] * 100:.2f}%)")
    choice = {"rule": "greedy: remove the block whose removal costs the least held-out top-1 of the teacher (no fine-tuning)",
              "held_out_images": len(held_out),
              "teacher": str(teacher_path), "order": order, "steps": steps}
    atomic_write_json(Path(folder) / f"static-choice-s{seed}.json", choice)
    return choice


def compact(run_folder):
    """A finished run keeps a model-only last.pt (no optimizer state) and no best.pt: enough to teach, evaluate and
    export; its summary already holds the best-by-held-out figures."""
    folder = Path(run_folder)
    last = folder / "last.pt"
    if run_state(folder) != "done" or not last.is_file():
        return False
    state = load_checkpoint(last)
    changed = False
    if "optimizer" in state:
        state.pop("optimizer")
        tmp = folder / "last.pt.tmp"
        save_checkpoint(tmp, **{k: v for k, v in state.items() if k != "format"})
        tmp.replace(last)
        changed = True
    if (folder / "best.pt").exists():
        (folder / "best.pt").unlink()
        changed = True
    return changed


def write_config(run, folder):
    """The run's config as the YAML file train.py is started with (unchanged if it already holds the same)."""
    import yaml

    path = Path(folder) / "runs" / run.name / "config.yaml"
    class NoAliases(yaml.SafeDumper):  # config readers refuse YAML aliases (a shared list would be written as one)
        def ignore_aliases(self, data):
            return True

    # the header keeps the module's old path: a running campaign compares this text with its config files
    text = "# written by the campaign (cosinegate/cpu_campaign.py); train/train.py --config this file\n" + yaml.dump(
        run.config, Dumper=NoAliases, sort_keys=True)
    if not path.is_file() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, text)
    return path


def ready(run, folder):
    return run.config is not None and all(run_state(Path(folder) / "runs" / n) == "done" for n in run.needs)


def table(folder, runs):
    """experiments.collect's rows for the campaign's finished runs, compared with the static curve."""
    specs = [RunSpec(r.name, r.group, "resnet20" if r.config is None else r.config["model"]["backbone"], r.seed) for r in runs]
    return collect(Path(folder), specs)


def _kind(run):
    """What an epoch's time depends on: (backbone, dense or gated, distilled); None before the run can be planned."""
    if run.config is None:
        return None
    return (run.config["model"]["backbone"], "dense" if run.config["model"]["mode"] == "none" else "gated",
            bool(run.config.get("distill", {}).get("weight")))


def progress(folder, runs):
    """{run: state, epochs_done, epochs (planned), hours_left}: hours_left estimates the one-core hours the run still
    needs, its epochs left times the median epoch seconds of its own epochs, or before it has one, of every epoch
    trained so far by runs of its kind (_kind; this machine, shared with other work while they ran); None where
    neither exists, or the run cannot be planned yet (a static run before its teacher, a control before every
    fine-tune)."""
    report, seconds, own = {}, {}, {}
    for run in runs:
        path = Path(folder) / "runs" / run.name / "metrics.jsonl"
        metrics = read_metrics(path) if path.is_file() else []
        own[run.name] = [m["seconds"] for m in metrics if m.get("seconds")]
        seconds.setdefault(_kind(run), []).extend(own[run.name])
        planned = run.config["optim"]["epochs"] if run.config else None
        report[run.name] = {"state": run_state(Path(folder) / "runs" / run.name), "epochs_done": len({m["epoch"] for m in metrics}),
                            "epochs": planned}
    for run in runs:
        entry, measured = report[run.name], sorted(own[run.name] or seconds.get(_kind(run)) or [])
        median = measured[len(measured) // 2] if measured else None
        if entry["state"] == "done":
            entry["hours_left"] = 0.0
        elif entry["epochs"] is None or median is None:  # not plannable yet, or no epoch of its kind yet
            entry["hours_left"] = None
        else:
            entry["hours_left"] = round(max(0, entry["epochs"] - entry["epochs_done"]) * median / 3600, 2)
    return report


def hours_left_line(state, jobs=2):
    """One line: the estimated one-core hours the campaign still needs, and the least that is in hours with `jobs`
    runs at once (runs wait for their teacher, so it can take longer)."""
    known = [p["hours_left"] for p in state.values() if p["hours_left"] is not None]
    unknown = [n for n, p in state.items() if p["hours_left"] is None]
    if not known or (unknown and not sum(known)):
        return f"One-core hours left: not estimated yet (no epoch of the kind of {', '.join(unknown)})."
    total = sum(known)
    text = (f"About {total:.1f} one-core hours left (at least {total / jobs:.1f} hours with {jobs} runs at once), from "
            "the median epoch time of each run, or of runs of its kind, measured so far on this shared machine")
    return text + (f"; not estimated yet: {', '.join(unknown)} (no epoch of their kind, or not plannable)." if unknown else ".")


@dataclass
class Result:
    finished: list
    stopped: list
    failed: list
    seconds: float


def _start(folder, run, left, threads, device, command, nice, stop_after):
    config_path = write_config(run, folder)
    run_dir = folder / "runs" / run.name
    args = [*command, "--config", str(config_path), "--device", device, "--out", str(run_dir), "--no-progress",
            *(["--time-limit", str(int(left))] if left != float("inf") else []),
            *SPEED_FLAGS["none" if run.config["model"]["mode"] == "none" else "gated"]]
    if run_state(run_dir) == "partial":
        args.append("--resume")
    if stop_after is not None:
        args += ["--stop-after", str(stop_after)]
    env = child_env(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    with open(run_dir / "train.log", "a") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env,
                                preexec_fn=(lambda: os.nice(nice)) if nice else None), "--resume" in args


def _plans(folders, log, choose=True):
    """Each campaign's plan (after writing the static choices its finished teachers allow, when `choose`, and
    compacting finished runs), as one priority list of (folder, run): every campaign's runs in folder order, the
    controls last."""
    queue = []
    for rank, folder in enumerate(folders):
        protocol = load_protocol(folder)
        runs = plan(folder, protocol)
        for run in runs:
            if (choose and run.group == "teacher" and protocol["static_removals"]
                    and run_state(folder / "runs" / run.name) == "done" and _read_choice(folder, run.seed) is None):
                choose_static_blocks(folder, protocol, run.seed, log=log)
                runs = plan(folder, protocol)
        for run in runs:
            if run_state(folder / "runs" / run.name) == "done" and compact(folder / "runs" / run.name):
                log(f"{run.name}: finished; kept a model-only last.pt")
        queue += [(run.group.startswith("control"), rank, i, folder, run) for i, run in enumerate(runs)]
    return [(folder, run) for *_, folder, run in sorted(queue, key=lambda q: q[:3])]


def _stop_children(running):
    """Stop the runs still going (on the way out after an error): each keeps its last whole epoch."""
    for proc in running.values():
        if proc.poll() is None:
            proc.terminate()
    for proc in running.values():
        proc.wait()


def continue_campaign(folders, deadline, jobs=2, threads=1, device="cpu", command=TRAIN_COMMAND, nice=10, poll=5.0, log=print,
                      stop_after=None, start_margin=START_MARGIN):
    """Train the runs of one campaign folder (or of several, sharing the `jobs` slots: the first folder's runs first,
    every folder's controls last), `jobs` at once (`threads` each), until every run is done or the next epoch would
    end after `deadline` (a time.time() value): each run then stops after its last whole epoch (train.py
    --time-limit); no run starts in the last `start_margin` seconds. stop_after=N stops every run after epoch N of
    its schedule (a chunk measured in epochs). Returns what finished, stopped and failed (run names; a folder's
    name/ in front when there are several folders)."""
    folders = [Path(f) for f in ([folders] if isinstance(folders, (str, Path)) else folders)]
    label = (lambda folder, name: name) if len(folders) == 1 else (lambda folder, name: f"{folder.name}/{name}")
    started, running, finished, stopped, failed = time.time(), {}, [], [], []  # running: (folder, name) -> process
    with contextlib.ExitStack() as stack:
        for folder in folders:  # one campaign process per folder (report and check may run beside it)
            stack.enter_context(folder_lock(folder, "cpu_campaign.py"))
        stack.callback(_stop_children, running)  # a crash of this process never leaves a run going unwatched
        while True:
            left = deadline - time.time()
            queue = _plans(folders, log, choose=left >= start_margin)
            for folder, run in queue:
                key = (folder, run.name)
                if len(running) >= jobs or left < start_margin:
                    break
                if (run_state(folder / "runs" / run.name) == "done" or key in running or key in failed or key in stopped
                        or not ready(run, folder)):
                    continue
                running[key], resumed = _start(folder, run, left, threads, device, command, nice, stop_after)
                log(f"{label(*key)}: {'resumed' if resumed else 'started'} ({progress(folder, [run])[run.name]['epochs_done']} "
                    f"of {run.config['optim']['epochs']} epochs done)")
            if not running:
                break
            time.sleep(poll)
            for (folder, name), proc in list(running.items()):
                if proc.poll() is None:
                    continue
                key = (folder, name)
                del running[key]
                run = next(r for f, r in queue if (f, r.name) == key)
                if proc.returncode != 0:
                    failed.append(key)
                    log(f"{label(*key)}: FAILED (exit {proc.returncode}); see {folder / 'runs' / name / 'train.log'}")
                elif run_state(folder / "runs" / name) == "done":
                    finished.append(key)
                    log(f"{label(*key)}: done")
                else:
                    stopped.append(key)
                    log(f"{label(*key)}: stopped at the deadline ({progress(folder, [run])[name]['epochs_done']} epochs done)")
        for folder, run in _plans(folders, log, choose=False):
            compact(folder / "runs" / run.name)
    finished, stopped, failed = ([label(*k) for k in keys] for keys in (finished, stopped, failed))
    return Result(finished, stopped, failed, time.time() - started)


def _teacher_lines(folder, runs):
    lines = []
    for run in (r for r in runs if r.group == "teacher" or r.group.startswith("reference-")):
        path = Path(folder) / "runs" / run.name
        metrics = read_metrics(path / "metrics.jsonl") if (path / "metrics.jsonl").is_file() else []
        minutes = sum(m.get("seconds", 0.0) for m in metrics) / 60
        if (path / "summary.json").is_file():
            summary = json.loads((path / "summary.json").read_text())
            lines.append(f"| {run.name} | {summary['final']['top1'] * 100:.2f} | {len(metrics)} | {minutes:.0f} | {summary['hardware']} |")
        elif metrics:
            lines.append(f"| {run.name} | (held-out {metrics[-1]['val_top1'] * 100:.2f} at epoch {metrics[-1]['epoch']}) | "
                         f"{len(metrics)} of {run.config['optim']['epochs']} | {minutes:.0f} | in progress |")
    return lines


def reference_goal(rows, reference):
    """The deeper-backbone goal (issue 21's fallback): a gated run at <= the dense reference's MACs >= 0.3 pp above it."""
    goal = f"a gated network at <= the dense {reference} MACs >= 0.3 pp above it (both with 2 seeds)"
    ref = next((r for r in rows if r["preset"] == f"reference-{reference}" and r["seeds"] >= 2), None)
    if ref is None:
        return goal, f"open: the dense {reference} has not finished with 2 seeds"
    gated = [r for r in rows if r["mode"] != "none" and r["seeds"] >= 2 and not r["preset"].startswith("control")]
    if not gated:
        return goal, "open: no gated contender finished with 2 seeds yet"
    cheap = [r for r in gated if r["executed_macs"] <= ref["executed_macs"]]
    if not cheap:
        return goal, (f"not met: every gated run executes more than {ref['executed_macs'] / 1e6:.1f}M MACs (least: "
                      f"{min(r['executed_macs'] for r in gated) / 1e6:.1f}M)")
    best = max(cheap, key=lambda r: r["top1_mean"])
    gain = best["top1_mean"] - ref["top1_mean"]
    return goal, (f"{'met' if gain >= 0.003 else 'not met'}: {best['preset']} {best['top1_mean'] * 100:.2f}% at "
                  f"{best['executed_macs'] / 1e6:.1f}M MACs vs {reference} {ref['top1_mean'] * 100:.2f}% at "
                  f"{ref['executed_macs'] / 1e6:.1f}M ({gain * 100:+.2f} pp)")


def goals(rows, teacher_top1, deploy_status=None, reference=None):
    """Issue 21's goals on the finished rows: (goal, status text); deploy_status: the deployment goal's line;
    reference: the protocol's dense reference backbone, whose goal is added."""
    gated = [r for r in rows if r["mode"] != "none"]
    both = [r for r in gated if r["seeds"] >= 2]
    out = []
    inside = [r for r in both if r.get("gain_vs_static") is not None]
    if inside:
        best = max(inside, key=lambda r: r["gain_vs_static"])
        met = best["beats_static"]
        out.append(("best gated >= 0.3 pp above the static curve at its executed MACs, >= half of its savings dynamic",
                    f"{'met' if met else 'not met'}: {best['preset']} {best['gain_vs_static'] * 100:+.2f} pp, "
                    f"{best['dynamic_share'] * 100:.0f}% dynamic ({best['seeds']} seeds)"))
    elif both:
        out.append(("best gated >= 0.3 pp above the static curve", "not measured: every gated contender with 2 seeds lies "
                    "outside the static curve's MAC range"))
    else:
        out.append(("best gated >= 0.3 pp above the static curve", "open: no gated contender finished with 2 seeds yet"))
    if both and teacher_top1 is not None:
        close = [r for r in both if r["real_savings"] >= 0.285]
        best = max(close, key=lambda r: r["top1_mean"]) if close else None
        if best is None:
            out.append((">= 28.5% real savings within 0.3 pp of the teacher", "not met: no contender saves 28.5%"))
        else:
            gap = best["top1_mean"] - teacher_top1
            out.append((">= 28.5% real savings within 0.3 pp of the teacher",
                        f"{'met' if gap >= -0.003 else 'not met'}: {best['preset']} {best['real_savings'] * 100:.1f}% at "
                        f"{gap * 100:+.2f} pp"))
    else:
        out.append((">= 28.5% real savings within 0.3 pp of the teacher", "open: needs the teachers and 2 seeds of a gated contender"))
    out.append(("the winner exported with --policy auto passes parity; INT8 Q/DQ <= 0.5 pp, gate agreement >= 99.5%",
                deploy_status or "open: no gated contender has finished"))
    if reference:
        out.append(reference_goal(rows, reference))
    return out


def deploy_status(folder, runs, rows):
    """The deployment goal's line for the leading gated run (_winner's rule over the runs finished so far)."""
    run = _winner(folder, runs, rows)
    if run is None:
        return None
    path = Path(folder) / WINNER_CHECK
    record = read_json(path, "winner check") if path.is_file() else None
    line = winner_check.status(record, run.name, Path(folder) / "runs" / run.name / "last.pt")
    return line if _finetunes_done(folder, runs) else line + " (provisional: fine-tunes still running)"


def check_winner(folder, test_images=None, log=print):
    """winner_check.check on the leading gated run's last.pt, recorded in WINNER_CHECK (None: no gated run finished)."""
    folder = Path(folder)
    runs = plan(folder, load_protocol(folder))
    run = _winner(folder, runs)
    if run is None:
        return None
    compact(folder / "runs" / run.name)  # the check names last.pt by hash: hash the file the campaign keeps
    record = winner_check.check(folder / "runs" / run.name / "last.pt", test_images=test_images, log=log)
    record.update(run=run.name, all_finetunes_done=_finetunes_done(folder, runs))
    atomic_write_json(folder / WINNER_CHECK, record)
    return record


def write_report(folder, protocol=None, jobs=2):
    """results.md, results.json and pareto.png of the campaign folder, from its state as it is now (`jobs`: runs at
    once, for the hours-left line)."""
    folder = Path(folder)
    protocol = protocol or load_protocol(folder)
    runs = plan(folder, protocol)
    rows = table(folder, runs)
    state = progress(folder, runs)
    teacher = [r for r in rows if r["preset"] == "teacher"]
    teacher_top1 = teacher[0]["top1_mean"] if teacher and teacher[0]["seeds"] == protocol["seeds"] else None
    ft = protocol["finetune"]
    note = (f"Protocol (campaign.json): {protocol['backbone']} on {protocol['data']['root']} (45,000 train / 5,000 held out / "
            f"10,000 test), {protocol['seeds']} seeds; dense teacher recipe train/configs/{TEACHER_PRESET}.yaml; every "
            f"contender fine-tuned from its seed's teacher for {ft['epochs']} epochs (lr {ft['lr']} {ft['schedule']}, "
            f"nesterov, gates at {ft['gate_lr_scale']}x the lr, distillation weight {ft['distill']['weight']} at "
            f"T={ft['distill']['temperature']})"
            + (f"; a dense {protocol['reference']['backbone']} trained from scratch with the teacher's recipe for "
               f"{protocol['teacher_epochs'] + ft['epochs']} epochs" if protocol.get("reference") else "")
            + ("" if protocol.get("controls", True) else "; no control run")
            + "; CPU, one thread per run, bf16 autocast. Rows show finished runs only.")
    lines = [f"# The CPU campaign (issue 21), {protocol['backbone']}: dense teacher, then every contender fine-tuned from it",
             "", note, "",
             "## Teachers" + (" and the dense reference" if protocol.get("reference") else ""), "", "| run | test top-1 % (final epoch) | epochs | minutes training | hardware |", "|---|---|---|---|---|",
             *_teacher_lines(folder, runs), "", "## Goals", ""]
    status = deploy_status(folder, runs, rows)
    reference = (protocol.get("reference") or {}).get("backbone")
    lines += [f"- {goal}: **{text}**" for goal, text in goals(rows, teacher_top1, status, reference)]
    lines += ["", "## Progress", "", hours_left_line(state, jobs), "", "| run | state | epochs | one-core hours left (est.) |",
              "|---|---|---|---|"]
    lines += [f"| {n} | {p['state']} | {p['epochs_done']} of {p['epochs'] or '?'} | "
              f"{'?' if p['hours_left'] is None else format(p['hours_left'], '.1f')} |" for n, p in state.items()]
    text = "\n".join(lines) + "\n\n" + (results_markdown(rows, "") if rows else "No run has finished yet.\n")
    atomic_write_text(folder / "results.md", text)
    atomic_write_json(folder / "results.json", {"protocol": protocol, "rows": rows, "progress": state,
                                                "goals": dict(goals(rows, teacher_top1, status, reference))})
    if rows:
        pareto_plot(rows, folder / "pareto.png", "CPU campaign: top-1 vs executed MACs (fine-tuned from the teacher)",
                    paper_points=False)
    return text
