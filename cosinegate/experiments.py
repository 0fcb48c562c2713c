"""reproduce.py's library: plan same-recipe runs, run them resumably, collect the honest table.

Every run of a backbone shares one recipe (epochs, schedule, batch, data) taken
from --epochs and the dense preset; presets differ only in their gate settings.
The static baseline ("static") is the dense backbone with whole blocks removed so
that its MACs match the balanced preset's compute target.
"""

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cosinegate.errors import CosineGateError
from cosinegate.macs import mac_table

PRESETS = ("dense", "static", "paper", "aggressive", "balanced", "conservative", "balanced-batch", "balanced-sample", "balanced-floor")
# Published CIFAR-10 points of arXiv 2512.22206 (nominal savings: 1 - mean gate probability, gate needs F(x)).
PAPER_POINTS = [
    {"label": "paper aggressive (nominal)", "top1": 0.899, "nominal_savings": 0.241},
    {"label": "paper balanced (nominal)", "top1": 0.913, "nominal_savings": 0.285},
    {"label": "paper conservative (nominal, 'minimal reduction')", "top1": 0.932, "nominal_savings": 0.0},
    {"label": "ResNet-20, He et al. (published)", "top1": 0.9125, "nominal_savings": 0.0},
]


@dataclass
class RunSpec:
    name: str
    preset: str
    backbone: str
    seed: int
    args: list = field(default_factory=list)


def static_drop_blocks(backbone, target_ratio):
    """Blocks to remove so that the dense MACs shrink to about target_ratio.

    A sensible shallower network: never the first block of a stage, and blocks are
    taken round-robin from the end of each stage, as long as each removal brings the
    MAC ratio closer to the target.
    """
    from cosinegate.models.backbones import backbone_spec

    spec, table = backbone_spec(backbone), mac_table(backbone)
    stages = []
    for block in spec.blocks:
        if block.index == 0 or block.changes_shape:
            stages.append([])
        else:
            stages[-1].append(block.index)
    order = []
    while any(stages):
        for stage in stages:
            if stage:
                order.append(stage.pop())
    dense, current, dropped = table.dense, table.dense, []
    for index in order:
        after = current - table.blocks[index].residual
        if abs(after / dense - target_ratio) >= abs(current / dense - target_ratio):
            break
        dropped.append(index)
        current = after
    return sorted(dropped)


def static_baselines(presets):
    """(label, compute target) of the static baselines: one per distinct target of the gated
    presets in the plan (the balanced target when there is none), so every gated point has a
    statically pruned neighbour at about the same MACs."""
    from cosinegate.config import load_config

    gated = [p for p in presets if p not in ("dense", "static", "paper")] or ["balanced"]
    by_target = {}
    for preset in gated:
        target = load_config(preset)["gate"]["target"]
        by_target.setdefault(target, "static" if preset.startswith("balanced") else f"static-{preset}")
    return [(label, target) for target, label in by_target.items()]


def plan_runs(backbones, presets, seeds, epochs, data, data_root=None, subset=None):
    unknown = [p for p in presets if p not in PRESETS]
    if unknown:
        raise CosineGateError(f"unknown preset(s) {unknown}; choose from {', '.join(PRESETS)}.")
    runs = []
    common = ["--epochs", str(epochs), "--data", data, "--schedule", "cosine", "--lr", "0.1", "--batch-size", "128"]
    if data_root:
        common += ["--data-root", str(data_root)]
    if subset:
        common += ["--subset", str(subset)]
    for backbone in backbones:
        for preset in presets:
            variants = static_baselines(presets) if preset == "static" else [(preset, None)]
            for label, target in variants:
                for seed in range(seeds):
                    config = "dense" if preset == "static" else preset
                    args = ["--config", config, "--backbone", backbone, "--seed", str(seed)] + common
                    if target is not None:
                        args += ["--drop-blocks", ",".join(map(str, static_drop_blocks(backbone, target)))]
                    runs.append(RunSpec(f"{backbone}-{label}-s{seed}", label, backbone, seed, args))
    return runs


def run_state(run_dir):
    run_dir = Path(run_dir)
    if (run_dir / "summary.json").is_file():
        return "done"
    return "partial" if (run_dir / "last.pt").is_file() else "new"


def launch(run, out, device, script):
    """Start one run as a subprocess (resuming a partial one); return the Popen."""
    run_dir = Path(out) / "runs" / run.name
    args = [sys.executable, str(script), *run.args, "--device", device, "--out", str(run_dir), "--no-progress"]
    if run_state(run_dir) == "partial":
        args.append("--resume")
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "train.log", "a") as log:  # the child keeps its own descriptor
        return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)


def collect(out, runs):
    """Group finished runs by (backbone, preset) and aggregate over seeds."""
    groups = {}
    for run in runs:
        path = Path(out) / "runs" / run.name / "summary.json"
        if path.is_file():
            groups.setdefault((run.backbone, run.preset), []).append(json.loads(path.read_text()))
    rows = []
    for (backbone, preset), summaries in groups.items():
        finals = [s["final"] for s in summaries]
        top1 = np.array([f["top1"] for f in finals])
        rows.append({
            "backbone": backbone,
            "preset": preset,
            "mode": finals[0]["mode"],
            "seeds": len(finals),
            "epochs": summaries[0]["epochs"],
            "data": summaries[0]["data"],
            "hardware": summaries[0]["hardware"],
            "top1_mean": float(top1.mean()),
            "top1_std": float(top1.std(ddof=1)) if len(top1) > 1 else 0.0,
            "dense_macs": finals[0]["dense_macs"],
            "executed_macs": float(np.mean([f["executed_macs"] for f in finals])),
            "real_savings": float(np.mean([f["real_savings"] for f in finals])),
            "static_savings": float(np.mean([f["static_savings"] for f in finals])),
            "dynamic_savings": float(np.mean([f["dynamic_savings"] for f in finals])),
            "nominal_savings": float(np.mean([f["nominal_savings"] for f in finals])),
            "skip_rates": np.mean([f["skip_rates"] for f in finals], axis=0).round(4).tolist(),
            "block_classes": finals[0]["block_classes"],
            "drop_blocks": finals[0]["drop_blocks"],
            "mutual_information_bits": np.mean([f["mutual_information_bits"] for f in finals], axis=0).round(4).tolist(),
        })
    order = {p: i for i, p in enumerate(PRESETS)}
    return sorted(rows, key=lambda r: (r["backbone"], order[r["preset"].split("-")[0] if r["preset"].startswith("static") else r["preset"]], r["preset"]))


def results_markdown(rows, note):
    lines = [
        "# CosineGate on CIFAR-10: same-recipe results",
        "",
        note,
        "",
        "Final-epoch test top-1 (no checkpoint picked on the test set). Executed MACs are counted from hard",
        "decisions over the whole test split; *nominal* is the paper's figure (1 - mean gate probability), which",
        "is not a compute measure. Paper-mode gates need F(x) before deciding, so their real savings are <= 0.",
        "",
        "| backbone | preset | mode | seeds | top-1 % | dense MMACs | executed MMACs | real savings % | static % | dynamic % | nominal % (paper's figure) | dropped blocks |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        std = f" ± {r['top1_std'] * 100:.2f}" if r["seeds"] > 1 else ""
        lines.append(
            f"| {r['backbone']} | {r['preset']} | {r['mode']} | {r['seeds']} | {r['top1_mean'] * 100:.2f}{std} | "
            f"{r['dense_macs'] / 1e6:.2f} | {r['executed_macs'] / 1e6:.2f} | {r['real_savings'] * 100:.1f} | "
            f"{r['static_savings'] * 100:.1f} | {r['dynamic_savings'] * 100:.1f} | {r['nominal_savings'] * 100:.1f} | "
            f"{','.join(map(str, r['drop_blocks'])) or '-'} |"
        )
    lines += ["", "Per-block skip rates (test split) and block classes:", ""]
    for r in rows:
        if r["mode"] != "none":
            rates = " ".join(f"{s * 100:.0f}" for s in r["skip_rates"])
            lines.append(f"- {r['backbone']} {r['preset']}: skip % [{rates}]; classes {r['block_classes']}")
    return "\n".join(lines) + "\n"


def pareto_plot(rows, path, title, paper_points=True):
    """Accuracy vs executed MACs; the paper's published CIFAR-10 points only when the data is CIFAR-10."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cosinegate.plots import _save

    fig, ax = plt.subplots(figsize=(8, 5.5))
    markers = {"none": "s", "predictive": "o", "paper": "^"}
    for r in rows:
        x = r["executed_macs"] / r["dense_macs"]
        label = f"{r['backbone']} {r['preset']}"
        ax.errorbar(x, r["top1_mean"] * 100, yerr=r["top1_std"] * 100, marker=markers[r["mode"]], linestyle="none", label=label)
    for p in PAPER_POINTS if paper_points else ():
        ax.scatter(1 - p["nominal_savings"], p["top1"] * 100, marker="x", color="grey")
        ax.annotate(p["label"], (1 - p["nominal_savings"], p["top1"] * 100), fontsize=7, color="grey")
    ax.set(xlabel="executed MACs / dense MACs of the same backbone (paper points: 1 - nominal savings)",
           ylabel="test top-1 %", title=title)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    _save(fig, path)
    plt.close(fig)
