"""reproduce.py's library: plan same-recipe runs, run them resumably, collect the honest table.

Every run of a backbone shares one recipe (epochs, schedule, batch, data) taken
from --epochs and the dense preset; presets differ only in their gate settings.
The static baseline ("static") is the dense backbone with whole blocks removed so
that its MACs match the balanced preset's compute target; --static-curve adds more
static points, and every gated run is compared with that curve at its own MACs.
"""

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cosinegate import plots
from cosinegate.config import load_config
from cosinegate.errors import CosineGateError
from cosinegate.macs import mac_table
from cosinegate.models.backbones import CIFAR_DEPTHS, backbone_spec
from cosinegate.models.ungated import resolve_ungated
from cosinegate.research import TRAIN_COMMAND, child_env
from cosinegate.training.metrics_log import read_summary

PRESETS = ("dense", "static", "paper", "aggressive", "balanced", "conservative", "balanced-batch", "balanced-sample", "balanced-floor",
           "balanced-quiet", "rates", "shaping", "two-phase")
TWO_PHASE = "two-phase"  # fine-tunes the same backbone's and seed's dense run (which the plan then includes)
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
    init_from_run: str = None  # two-phase: the run whose last.pt it starts from (and waits for)


def removal_order(backbone):
    """Blocks in the order a sensible shallower network loses them: never the first block
    of a stage, taken round-robin from the end of each stage."""
    stages = []
    for block in backbone_spec(backbone).blocks:
        if block.index == 0 or block.changes_shape:
            stages.append([])
        else:
            stages[-1].append(block.index)
    order = []
    while any(stages):
        for stage in stages:
            if stage:
                order.append(stage.pop())
    return order


def static_drop_blocks(backbone, target_ratio):
    """Blocks to remove (in removal_order) so that the dense MACs shrink to about target_ratio,
    as long as each removal brings the MAC ratio closer to the target."""
    table = mac_table(backbone)
    dense, current, dropped = table.dense, table.dense, []
    for index in removal_order(backbone):
        after = current - table.blocks[index].residual
        if abs(after / dense - target_ratio) >= abs(current / dense - target_ratio):
            break
        dropped.append(index)
        current = after
    return sorted(dropped)


def compute_target(config):
    """The MAC ratio a preset aims at: gate.target for the MAC hinge; with per-block rates (and no hinge),
    the MAC-weighted mean of the block rates, ungated blocks counting as always run."""
    gate, model = config["gate"], config["model"]
    if gate["block_rates"] is None or gate["penalty"]:
        return gate["target"]
    macs = [b.residual for b in mac_table(model["backbone"]).blocks]
    from cosinegate.training.penalty import block_rate_targets  # torch: `reproduce --help` needs the base install only

    rates = block_rate_targets(gate["block_rates"], len(macs))
    ungated = set(resolve_ungated(model["backbone"], model["ungated_blocks"]))
    return sum(m * (1.0 if i in ungated else r) for i, (m, r) in enumerate(zip(macs, rates))) / sum(macs)


def static_baselines(presets, block_rates=None):
    """(label, compute target) of the static baselines: one per distinct target of the gated
    presets in the plan (the balanced target when there is none), so every gated point has a
    statically pruned neighbour at about the same MACs."""
    gated = [p for p in presets if p not in ("dense", "static", "paper")] or ["balanced"]
    by_target = {}
    for preset in gated:
        config = load_config(preset)
        if block_rates is not None and config["gate"]["block_rates"] is not None:
            config["gate"]["block_rates"] = block_rates
        target = round(compute_target(config), 3)
        by_target.setdefault(target, "static" if preset.startswith("balanced") else f"static-{preset}")
    return [(label, target) for target, label in by_target.items()]


def plan_runs(backbones, presets, seeds, epochs, data, data_root=None, subset=None, static_curve=0, finetune_epochs=None,
              block_rates=None, own_recipe=()):
    """One RunSpec per (backbone, preset or static baseline, seed). static_curve=K adds the
    static points with 1..K blocks removed (labels static-d1..static-dK), so gated points can
    be compared with the static curve at their own executed MACs. two-phase runs fine-tune the
    dense run of their backbone and seed for `finetune_epochs` (default epochs // 4) at the
    preset's own learning rate; the dense run joins the plan if it is not in it. block_rates overrides
    the rate of the presets that use per-block rates; presets in own_recipe keep their YAML schedule and
    learning rate (e.g. the paper's warm restarts) instead of the shared cosine recipe."""
    unknown = [p for p in presets if p not in PRESETS]
    if unknown:
        raise CosineGateError(f"unknown preset(s) {unknown}; choose from {', '.join(PRESETS)}.")
    if TWO_PHASE in presets and "dense" not in presets:
        presets = ["dense", *presets]
    runs = []
    common = ["--data", data, "--batch-size", "128"]
    if data_root:
        common += ["--data-root", str(data_root)]
    if subset:
        common += ["--subset", str(subset)]
    for backbone in backbones:
        order = removal_order(backbone)
        if not 0 <= static_curve <= len(order):
            raise CosineGateError(f"--static-curve {static_curve}: {backbone} has {len(order)} removable "
                                  "blocks (not the first of a stage); pick 0..that many.")
        curve = [(f"static-d{k}", sorted(order[:k])) for k in range(1, static_curve + 1)]
        variants = []
        for preset in presets:
            if preset == "static":
                variants += [("dense", label, static_drop_blocks(backbone, target))
                             for label, target in static_baselines(presets, block_rates)]
            else:
                variants.append((preset, preset, None))
        taken = [drops for _, _, drops in variants]
        variants += [("dense", label, drops) for label, drops in curve if drops not in taken]
        for config, label, drops in variants:
            for seed in range(seeds):
                args = ["--config", config, "--backbone", backbone, "--seed", str(seed)] + common
                after = None
                if config == TWO_PHASE:
                    args += ["--epochs", str(finetune_epochs or max(1, epochs // 4)), "--schedule", "cosine"]
                    after = f"{backbone}-dense-s{seed}"
                elif config in own_recipe:
                    args += ["--epochs", str(epochs)]
                else:
                    args += ["--epochs", str(epochs), "--schedule", "cosine", "--lr", "0.1"]
                if block_rates is not None and load_config(config)["gate"]["block_rates"] is not None:
                    args += ["--block-rates", str(block_rates)]
                if drops is not None:
                    args += ["--drop-blocks", ",".join(map(str, drops))]
                runs.append(RunSpec(f"{backbone}-{label}-s{seed}", label, backbone, seed, args, after))
    return runs


def run_state(run_dir):
    """"done" (summary.json written), "partial" (a last.pt to resume) or "new" (the CPU campaign's rule too)."""
    run_dir = Path(run_dir)
    if (run_dir / "summary.json").is_file():
        return "done"
    return "partial" if (run_dir / "last.pt").is_file() else "new"


def launch(run, out, device, extra=(), command=TRAIN_COMMAND):
    """Start one run as a subprocess (resuming a partial one); return the Popen. `extra`: more cosinegate train flags
    (speed settings, --time-limit); `command`: the argv that starts training (default `python -m cosinegate.cli.train`)."""
    run_dir = Path(out) / "runs" / run.name
    args = [*command, *run.args, "--device", device, "--out", str(run_dir), "--no-progress", *extra]
    if run.init_from_run:
        args += ["--init-from", str(Path(out) / "runs" / run.init_from_run / "last.pt")]
    if run_state(run_dir) == "partial":
        args.append("--resume")
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "train.log", "a") as log:  # the child keeps its own descriptor
        return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=child_env())


def seed_of(summary, index):
    """The seed a run's summary was trained with (its config's), else its place among the row's runs."""
    config = summary.get("config")
    seed = config.get("seed") if isinstance(config, dict) else None
    return seed if isinstance(seed, int) else index


def collect(out, runs):
    """Group finished runs by (backbone, preset) and aggregate over seeds."""
    groups = {}
    for run in runs:
        folder = Path(out) / "runs" / run.name
        if (folder / "summary.json").is_file():
            groups.setdefault((run.backbone, run.preset), []).append(read_summary(folder))
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
            "block_classes": [kinds[0] if len(set(kinds)) == 1 else "differs by seed"
                              for kinds in zip(*[f["block_classes"] for f in finals])],
            "per_seed": [{"seed": seed_of(summary, i), "top1": f["top1"], "executed_macs": f["executed_macs"],
                          "static_savings": f["static_savings"], "dynamic_savings": f["dynamic_savings"],
                          "drop_blocks": f["drop_blocks"]} for i, (summary, f) in enumerate(zip(summaries, finals))],
            "drop_blocks": finals[0]["drop_blocks"],
            "mutual_information_bits": np.mean([f["mutual_information_bits"] for f in finals], axis=0).round(4).tolist(),
        })
    order = {p: i for i, p in enumerate(PRESETS)}
    compare_with_static_curve(rows)
    compare_with_depths(rows)
    return sorted(rows, key=lambda r: (r["backbone"], order.get(r["preset"].split("-")[0] if r["preset"].startswith("static") else r["preset"],
                                                                len(order)), r["preset"]))


def static_curve(rows, backbone):
    """The dense and statically pruned rows of a backbone, cheapest first: the static curve."""
    return sorted((r for r in rows if r["backbone"] == backbone and r["mode"] == "none"), key=lambda r: r["executed_macs"])


def at_equal_macs(points, seeds):
    """(the curve's mean top-1 at each seed's executed MACs, the seeds' mean gain over it): `points` (rows with
    executed_macs and top1_mean, cheapest first) joined linearly; (None, None) with fewer than two points or a seed
    outside their MAC range."""
    macs, top1 = np.array([p["executed_macs"] for p in points]), np.array([p["top1_mean"] for p in points])
    if len(points) < 2 or not all(macs[0] <= x["executed_macs"] <= macs[-1] for x in seeds):
        return None, None
    curve = [float(np.interp(x["executed_macs"], macs, top1)) for x in seeds]
    return float(np.mean(curve)), float(np.mean([x["top1"] - c for x, c in zip(seeds, curve)]))


def compare_with_static_curve(rows, min_gain=0.003):
    """Set, on every gated row, the static curve's top-1 at the row's executed MACs.

    The curve runs through the seed-mean dense and statically pruned rows of the same
    backbone (linear between neighbouring points). Each seed of a gated row is read off
    the curve at its own executed MACs and the gains are averaged; a row with a seed
    outside the curve's MAC range gets None. Also sets the issue-7 goal: dynamic savings
    >= half of the savings from skipped blocks and a mean gain >= min_gain.
    """
    for backbone in {r["backbone"] for r in rows}:
        points = static_curve(rows, backbone)
        for r in rows:
            if r["backbone"] != backbone or r["mode"] == "none":
                continue
            r["static_top1_at_equal_macs"], r["gain_vs_static"] = at_equal_macs(points, r["per_seed"])
            inside = r["gain_vs_static"] is not None
            skipped = r["static_savings"] + r["dynamic_savings"]
            r["dynamic_share"] = r["dynamic_savings"] / skipped if skipped > 0 else 0.0
            r["beats_static"] = bool(inside and r["dynamic_share"] >= 0.5 and r["gain_vs_static"] >= min_gain)
    return rows


def depth_curve(rows):
    """The dense rows of the CIFAR ResNets (every block, no gate), cheapest first: real shallower networks."""
    return sorted((r for r in rows if r["backbone"] in CIFAR_DEPTHS and r["mode"] == "none" and not r["drop_blocks"]),
                  key=lambda r: r["executed_macs"])


def compare_with_depths(rows, min_gain=0.003):
    """Set, on every gated CIFAR-ResNet row, the top-1 of the dense-depth curve (ResNet-20/32/44/56/110 trained with
    the same recipe, linear between them) at the row's executed MACs, read per seed; None outside the curve."""
    points = depth_curve(rows)
    for r in rows:
        if r["mode"] == "none" or r["backbone"] not in CIFAR_DEPTHS:
            continue
        r["depth_top1_at_equal_macs"], r["gain_vs_depths"] = at_equal_macs(points, r["per_seed"])
        r["beats_depths"] = bool(r["gain_vs_depths"] is not None and r["gain_vs_depths"] >= min_gain)
    return rows


def _depth_panel(ax, rows, colors, depths, markers):
    """Top-1 vs absolute executed MACs: the dense CIFAR depths as a curve, every other CIFAR-ResNet run as a point."""
    ax.plot([d["executed_macs"] / 1e6 for d in depths], [d["top1_mean"] * 100 for d in depths], color="black",
            linestyle="--", linewidth=1, marker="s", label="dense depths (real shallower networks)")
    for d in depths:
        ax.annotate(d["backbone"], (d["executed_macs"] / 1e6, d["top1_mean"] * 100), xytext=(4, -10),
                    textcoords="offset points", fontsize=7)
    for r, color in zip(rows, colors):
        if r["backbone"] in CIFAR_DEPTHS and r not in depths:
            ax.errorbar(r["executed_macs"] / 1e6, r["top1_mean"] * 100, yerr=r["top1_std"] * 100, color=color,
                        marker=markers[r["mode"]], linestyle="none", label=f"{r['backbone']} {r['preset']}")
    ax.set(xlabel="mean executed MACs per image (M), hard decisions, full test split", ylabel="test top-1 %",
           title="against real shallower networks (same recipe)")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)


def dropped_blocks(row):
    """The blocks a row's runs remove ('-' for none): one list when every seed removes the same, else each seed's."""
    choices = [s["drop_blocks"] for s in row["per_seed"]]
    if all(c == choices[0] for c in choices):
        return ",".join(map(str, choices[0])) or "-"
    return "; ".join(f"s{s['seed']}: {','.join(map(str, s['drop_blocks'])) or '-'}" for s in row["per_seed"])


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
            f"{dropped_blocks(r)} |"
        )
    gated = [r for r in rows if "static_top1_at_equal_macs" in r]
    if gated:
        lines += ["", "Against the static curve (seed-mean dense and statically pruned runs, linear between points), each",
                  "seed read off at its own executed MACs. Goal: dynamic savings >= half of the savings from skipped blocks, top-1 >= 0.3 pp above the curve.",
                  "", "| backbone | preset | executed MMACs | top-1 % | static curve top-1 % | gain pp | dynamic share of savings | goal met |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in gated:
            curve, gain = r["static_top1_at_equal_macs"], r["gain_vs_static"]
            lines.append(
                f"| {r['backbone']} | {r['preset']} | {r['executed_macs'] / 1e6:.2f} | {r['top1_mean'] * 100:.2f} | "
                f"{'outside the curve' if curve is None else f'{curve * 100:.2f}'} | "
                f"{'-' if gain is None else f'{gain * 100:+.2f}'} | "
                f"{r['dynamic_share'] * 100:.0f}% | {'yes' if r['beats_static'] else 'no'} |")
    deep = [r for r in rows if r.get("depth_top1_at_equal_macs") is not None]
    if deep:
        names = ", ".join(p["backbone"] for p in depth_curve(rows))
        lines += ["", f"Against real shallower networks (dense {names}, same recipe, linear between them), each seed read off",
                  "at its own executed MACs. Goal: top-1 >= 0.3 pp above the depth curve.", "",
                  "| backbone | preset | executed MMACs | top-1 % | depth curve top-1 % | gain pp | goal met |", "|---|---|---|---|---|---|---|"]
        for r in deep:
            lines.append(f"| {r['backbone']} | {r['preset']} | {r['executed_macs'] / 1e6:.2f} | {r['top1_mean'] * 100:.2f} | "
                         f"{r['depth_top1_at_equal_macs'] * 100:.2f} | {r['gain_vs_depths'] * 100:+.2f} | {'yes' if r['beats_depths'] else 'no'} |")
    lines += ["", "Per-block skip rates (test split) and block classes:", ""]
    for r in rows:
        if r["mode"] != "none":
            rates = " ".join(f"{s * 100:.0f}" for s in r["skip_rates"])
            lines.append(f"- {r['backbone']} {r['preset']}: skip % [{rates}]; classes {r['block_classes']}")
    return "\n".join(lines) + "\n"


def write_results(out, rows, note, failed, title, paper_points=True):
    """results.json, results.md and pareto.png of the finished runs' ``rows`` in ``out`` (each written aside and
    renamed in); returns results.json's content."""
    from cosinegate.artifacts import atomic_write_json, atomic_write_text

    results = {"note": note, "rows": rows, "failed": failed}
    atomic_write_json(Path(out) / "results.json", results)
    atomic_write_text(Path(out) / "results.md", results_markdown(rows, note))
    pareto_plot(rows, Path(out) / "pareto.png", title, paper_points=paper_points)
    return results


def pareto_plot(rows, path, title, paper_points=True):
    """Accuracy vs executed MACs relative to each backbone's dense MACs; the paper's published CIFAR-10 points only
    when the data is CIFAR-10. With dense runs of two or more CIFAR depths, a second panel in absolute MACs sets the
    gated CIFAR ResNets against the real shallower networks (the ResNet-56-at-ResNet-32-cost goal)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    depths = depth_curve(rows)
    fig, axes = plt.subplots(1, 2 if len(depths) > 1 else 1, figsize=(17 if len(depths) > 1 else 10, 5.5), squeeze=False)
    ax = axes[0][0]
    markers = {"none": "s", "predictive": "o", "paper": "^"}
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    colors = [cycle[i % len(cycle)] for i in range(len(rows))]  # one colour per run, the same in both panels
    for r, color in zip(rows, colors):
        x = r["executed_macs"] / r["dense_macs"]
        label = f"{r['backbone']} {r['preset']}"
        ax.errorbar(x, r["top1_mean"] * 100, yerr=r["top1_std"] * 100, marker=markers[r["mode"]], linestyle="none",
                    label=label, color=color)
    for backbone in sorted({r["backbone"] for r in rows}):
        curve = [(r["executed_macs"] / r["dense_macs"], r["top1_mean"] * 100) for r in static_curve(rows, backbone)]
        if len(curve) > 1:
            ax.plot(*zip(*curve), color="grey", linestyle="--", linewidth=1, label=f"{backbone} static curve")
    for p in PAPER_POINTS if paper_points else ():
        ax.scatter(1 - p["nominal_savings"], p["top1"] * 100, marker="x", color="grey")
        ax.annotate(p["label"], (1 - p["nominal_savings"], p["top1"] * 100), xytext=(-5, 4), textcoords="offset points",
                    ha="right", fontsize=7, color="grey")
    ax.set(xlabel="executed MACs / dense MACs of the same backbone" + (" (paper points: 1 - nominal savings)" if paper_points else ""),
           ylabel="test top-1 %", title=title)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: never hides a point
    ax.grid(alpha=0.3)
    if len(depths) > 1:
        _depth_panel(axes[0][1], rows, colors, depths, markers)
    fig.tight_layout()
    plots._save(fig, path)
    plt.close(fig)
