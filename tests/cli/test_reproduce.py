"""train/reproduce.py on a tiny synthetic configuration, and its planning helpers."""

import json
import os
from pathlib import Path

import pytest
from conftest import run_script

from cosinegate.errors import CosineGateError
from cosinegate.macs import mac_table
from cosinegate.models import backbone_spec
from cosinegate.research.experiments import compare_with_static_curve, plan_runs, removal_order, static_drop_blocks


@pytest.mark.parametrize("backbone", ["resnet20", "resnet56"])
def test_static_baseline_matches_the_balanced_target(backbone):
    drops = static_drop_blocks(backbone, 0.68)
    ratio = mac_table(backbone, drop_blocks=drops).dense / mac_table(backbone).dense
    assert abs(ratio - 0.68) < 0.05
    stage_starts = {b.index for b in backbone_spec(backbone).blocks if b.index == 0 or b.changes_shape}
    assert drops and not set(drops) & stage_starts


def test_plan_is_one_recipe_per_backbone():
    runs = plan_runs(["resnet20"], ["dense", "static", "balanced", "paper"], 2, 7, "synthetic")
    assert [r.name for r in runs][:2] == ["resnet20-dense-s0", "resnet20-dense-s1"] and len(runs) == 8
    for run in runs:
        args = dict(zip(run.args[::2], run.args[1::2]))
        assert (args["--epochs"], args["--schedule"], args["--lr"], args["--batch-size"]) == ("7", "cosine", "0.1", "128")
    static = next(r for r in runs if r.preset == "static")
    assert "--drop-blocks" in static.args
    neighbours = plan_runs(["resnet20"], ["static", "aggressive", "balanced", "balanced-batch"], 1, 7, "synthetic")
    labels = [r.preset for r in neighbours if r.preset.startswith("static")]
    assert labels == ["static-aggressive", "static"]  # one static neighbour per distinct compute target
    with pytest.raises(CosineGateError, match="unknown preset"):
        plan_runs(["resnet20"], ["turbo"], 1, 1, "synthetic")


def test_static_curve_adds_one_point_per_removed_block_without_duplicates():
    runs = plan_runs(["resnet20"], ["dense", "static", "balanced"], 1, 7, "synthetic", static_curve=3)
    drops = {r.preset: r.args[r.args.index("--drop-blocks") + 1] for r in runs if "--drop-blocks" in r.args}
    assert drops == {"static": "2,5,8", "static-d1": "2", "static-d2": "2,5"}  # d3 is the balanced baseline itself
    assert removal_order("resnet20")[:3] == [2, 5, 8]
    alone = plan_runs(["resnet20"], ["balanced"], 1, 7, "synthetic", static_curve=1)
    assert [r.preset for r in alone] == ["balanced", "static-d1"]
    with pytest.raises(CosineGateError, match="removable"):
        plan_runs(["resnet20"], ["dense"], 1, 1, "synthetic", static_curve=7)


def _row(preset, mode, macs, top1, static=0.0, dynamic=0.0):
    dense = 40e6
    return {"backbone": "resnet20", "preset": preset, "mode": mode, "executed_macs": macs, "dense_macs": dense,
            "top1_mean": top1, "real_savings": 1 - macs / dense, "static_savings": static, "dynamic_savings": dynamic,
            "per_seed": [{"top1": top1, "executed_macs": macs}]}


def test_gated_runs_are_compared_with_the_static_curve_at_their_own_macs():
    rows = [_row("dense", "none", 40e6, 0.90), _row("static-d1", "none", 30e6, 0.88), _row("static", "none", 20e6, 0.80),
            _row("dyn", "predictive", 25e6, 0.845, dynamic=0.3, static=0.075),
            _row("static-ish", "predictive", 25e6, 0.86, static=0.3, dynamic=0.075),
            _row("tiny", "predictive", 10e6, 0.70, dynamic=0.75)]
    dyn, staticish, tiny = compare_with_static_curve(rows)[3:]
    assert dyn["static_top1_at_equal_macs"] == pytest.approx(0.84)  # halfway between 0.88 and 0.80
    assert dyn["gain_vs_static"] == pytest.approx(0.005) and dyn["beats_static"]
    assert staticish["gain_vs_static"] == pytest.approx(0.02) and not staticish["beats_static"]  # savings mostly static
    assert tiny["static_top1_at_equal_macs"] is None and not tiny["beats_static"]  # below the cheapest static point


def test_each_seed_is_read_off_the_curve_at_its_own_macs():
    rows = [_row("dense", "none", 40e6, 0.90), _row("static", "none", 20e6, 0.80),
            _row("dyn", "predictive", 30e6, 0.84, dynamic=0.25)]
    rows[2]["per_seed"] = [{"top1": 0.86, "executed_macs": 36e6}, {"top1": 0.82, "executed_macs": 24e6}]
    dyn = compare_with_static_curve(rows)[2]
    assert dyn["static_top1_at_equal_macs"] == pytest.approx((0.88 + 0.82) / 2)
    assert dyn["gain_vs_static"] == pytest.approx((-0.02 + 0.0) / 2)
    rows[2]["per_seed"][1]["executed_macs"] = 18e6  # one seed below the cheapest static point
    assert compare_with_static_curve(rows)[2]["gain_vs_static"] is None


def test_reproduce_tiny_synthetic_then_skips_finished_runs(tmp_path):
    out = tmp_path / "repro"
    args = ["--data", "synthetic", "--subset", "200", "--epochs", "1", "--presets", "dense,static,balanced",
            "--jobs", "2", "--out", out]
    done = run_script("train/reproduce.py", *args, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((out / "results.json").read_text())
    rows = {r["preset"]: r for r in results["rows"]}
    assert set(rows) == {"dense", "static", "balanced"}
    static = mac_table("resnet20", drop_blocks=rows["static"]["drop_blocks"])
    assert rows["static"]["real_savings"] == pytest.approx(1 - static.dense / mac_table("resnet20").dense, abs=1e-6)
    assert rows["static"]["static_savings"] > 0.3 and rows["dense"]["real_savings"] == 0.0
    for row in rows.values():
        assert row["epochs"] == 1 and row["data"] == "synthetic" and "cpu" in row["hardware"]
        assert len(row["skip_rates"]) == 9
    table = (out / "results.md").read_text()
    assert "nominal" in table and "| resnet20 | static |" in table
    assert (out / "pareto.png").stat().st_size > 1000
    again = run_script("train/reproduce.py", *args, timeout=300)
    assert again.returncode == 0 and "3 already finished, 0 to train" in again.stdout


# ---- issue 16: two phases, per-block-rate targets, real shallower networks, scheduling ------------------------


def test_two_phase_runs_start_from_their_dense_run():
    runs = plan_runs(["resnet20"], ["static", "rates", "two-phase"], 2, 40, "synthetic")
    names = [r.name for r in runs]
    assert names[:2] == ["resnet20-dense-s0", "resnet20-dense-s1"]  # the dense phase joins the plan
    phase2 = [r for r in runs if r.preset == "two-phase"]
    assert [r.init_from_run for r in phase2] == ["resnet20-dense-s0", "resnet20-dense-s1"]
    args = dict(zip(phase2[0].args[::2], phase2[0].args[1::2]))
    assert args["--epochs"] == "10" and "--lr" not in args  # epochs // 4 at the preset's own learning rate
    static = [r for r in runs if r.preset.startswith("static")]
    assert {r.preset for r in static} == {"static-rates"}  # rates and two-phase share one MAC target


def test_rates_target_is_the_mac_weighted_block_rates():
    from cosinegate.config import load_config
    from cosinegate.research.experiments import compute_target

    macs = [b.residual for b in mac_table("resnet20").blocks]
    expected = (sum(macs[i] for i in (0, 3, 6)) + 0.6 * sum(macs[i] for i in (1, 2, 4, 5, 7, 8))) / sum(macs)
    assert compute_target(load_config("rates")) == pytest.approx(expected)
    assert compute_target(load_config("balanced")) == 0.68


def test_gated_runs_are_compared_with_real_shallower_networks():
    from cosinegate.research.experiments import compare_with_depths

    def row(backbone, mode, macs, top1, drops=()):
        return {**_row("x", mode, macs, top1), "backbone": backbone, "drop_blocks": list(drops)}

    rows = [row("resnet20", "none", 40e6, 0.91), row("resnet32", "none", 70e6, 0.92), row("resnet44", "none", 100e6, 0.93),
            row("resnet56", "none", 60e6, 0.80, drops=(4,)),  # a dropped-block variant is not a real depth
            row("resnet56", "predictive", 55e6, 0.92), row("resnet56", "predictive", 130e6, 0.94)]
    gated, outside = compare_with_depths(rows)[4:]
    assert gated["depth_top1_at_equal_macs"] == pytest.approx(0.915) and gated["gain_vs_depths"] == pytest.approx(0.005)
    assert gated["beats_depths"] and outside["depth_top1_at_equal_macs"] is None and not outside["beats_depths"]


def test_pareto_plot_sets_gated_resnets_against_real_depths_in_absolute_macs(tmp_path, monkeypatch):
    from cosinegate import plots
    from cosinegate.research.experiments import pareto_plot

    def row(backbone, mode, macs, top1, drops=()):
        return {**_row(mode, mode, macs, top1), "backbone": backbone, "drop_blocks": list(drops), "dense_macs": 125e6,
                "top1_std": 0.001}

    rows = [row("resnet20", "none", 40e6, 0.91), row("resnet32", "none", 69e6, 0.92), row("resnet56", "none", 125e6, 0.93),
            row("resnet56", "none", 100e6, 0.925, drops=(4,)), row("resnet56", "predictive", 66e6, 0.925)]
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig))
    pareto_plot(rows, tmp_path / "pareto.png", "t", paper_points=False)
    relative, absolute = figures[0].axes
    depth_line = next(line for line in absolute.get_lines() if "depths" in line.get_label())
    assert list(depth_line.get_xdata()) == [40, 69, 125]  # real depths only, in MMACs, cheapest first
    points = {c.get_label(): c.lines[0].get_xdata()[0] for c in absolute.containers}
    assert points == {"resnet56 predictive": 66, "resnet56 none": 100}
    pareto_plot(rows[3:], tmp_path / "one.png", "t", paper_points=False)  # no two depths: one panel
    assert len(figures[1].axes) == 1


def test_scheduler_waits_for_dependencies_and_honours_the_deadline(tmp_path, monkeypatch):
    import time

    from cosinegate.research import experiments, packing

    started = []

    class Done:
        returncode = 0

        def poll(self):
            return 0

    def fake_launch(run, out, device, extra=()):
        started.append((run.name, list(extra)))
        folder = out / "runs" / run.name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "summary.json").write_text("{}")
        return Done()

    monkeypatch.setattr(experiments, "launch", fake_launch)
    runs = plan_runs(["resnet20"], ["two-phase"], 1, 8, "synthetic")
    two_phase_first = sorted(runs, key=lambda r: r.preset != "two-phase")
    assert packing.run_all(two_phase_first, tmp_path, "cpu", 4) == []
    assert [name for name, _ in started] == ["resnet20-dense-s0", "resnet20-two-phase-s0"]  # waited for its teacher
    started.clear()
    assert packing.run_all(runs, tmp_path / "late", "cpu", 4, deadline=time.time() + 10) == []
    assert started == []  # under MIN_LAUNCH_SECONDS left: nothing starts
    packing.run_all(runs[:1], tmp_path / "timed", "cpu", 4, deadline=time.time() + 300)
    assert started[0][1][0] == "--time-limit" and 250 < float(started[0][1][1]) <= 290


def test_runs_start_as_the_installed_module_not_a_checkout_script(tmp_path, monkeypatch):
    """Research code trains through `python -m cosinegate.cli.train` with this package first on PYTHONPATH, so it
    needs no train/ folder beside the package (subprocesses: several 1-thread runs at once)."""
    import subprocess
    import sys

    from cosinegate.research import experiments

    seen = {}
    monkeypatch.setattr(subprocess, "Popen", lambda args, **kw: seen.update(args=args, env=kw["env"]))
    run = plan_runs(["resnet20"], ["dense"], 1, 1, "synthetic")[0]
    experiments.launch(run, tmp_path, "cpu", ["--time-limit", "60"])
    assert seen["args"][:3] == [sys.executable, "-m", "cosinegate.cli.train"]
    assert seen["args"][-2:] == ["--time-limit", "60"] and "--out" in seen["args"]
    root = str(Path(experiments.__file__).resolve().parents[2])
    assert seen["env"]["PYTHONPATH"].split(os.pathsep)[0] == root


def test_the_table_names_each_seeds_dropped_blocks_when_the_seeds_chose_differently():
    """ResNet-56's static baselines: each seed's teacher chose its own blocks (static-choice-s0/s1.json), and the
    table shows both choices, not the first seed's alone; a choice shared by every seed is shown once."""
    from types import SimpleNamespace

    from cosinegate.research.experiments import collect, results_markdown

    folder = Path(__file__).resolve().parents[2] / "train/results/cifar10-campaign-cpu-r56"
    runs = [SimpleNamespace(name=f"{preset}-s{seed}", backbone="resnet56", preset=preset)
            for preset in ("static-d12", "teacher") for seed in (0, 1)]
    rows = {r["preset"]: r for r in collect(folder, runs)}
    choices = {seed: json.loads((folder / f"static-choice-s{seed}.json").read_text())["order"][:12] for seed in (0, 1)}
    assert choices[0] != choices[1]
    cell = [line for line in results_markdown(list(rows.values()), "").splitlines() if "| static-d12 |" in line][0]
    assert cell.split("|")[-2].strip() == "; ".join(f"s{s}: {','.join(map(str, sorted(c)))}" for s, c in choices.items())
    assert [s["seed"] for s in rows["static-d12"]["per_seed"]] == [0, 1]
    teacher = [line for line in results_markdown(list(rows.values()), "").splitlines() if "| teacher |" in line][0]
    assert teacher.split("|")[-2].strip() == "-"
