"""train/reproduce.py on a tiny synthetic configuration, and its planning helpers."""

import json

import pytest
from conftest import run_script

from cosinegate.errors import CosineGateError
from cosinegate.experiments import plan_runs, static_drop_blocks
from cosinegate.macs import mac_table
from cosinegate.models import backbone_spec


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


def test_reproduce_tiny_synthetic_then_skips_finished_runs(tmp_path):
    out = tmp_path / "repro"
    args = ["--data", "synthetic", "--subset", "200", "--epochs", "1", "--presets", "dense,static,balanced",
            "--jobs", "2", "--out", out]
    done = run_script("train/reproduce.py", *args, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((out / "results.json").read_text())
    rows = {r["preset"]: r for r in results["rows"]}
    assert set(rows) == {"dense", "static", "balanced"}
    assert rows["static"]["real_savings"] == pytest.approx(1 - 26_395_264 / 40_551_040, abs=1e-6)
    assert rows["static"]["static_savings"] > 0.3 and rows["dense"]["real_savings"] == 0.0
    for row in rows.values():
        assert row["epochs"] == 1 and row["data"] == "synthetic" and "cpu" in row["hardware"]
        assert len(row["skip_rates"]) == 9
    table = (out / "results.md").read_text()
    assert "nominal" in table and "| resnet20 | static |" in table
    assert (out / "pareto.png").stat().st_size > 1000
    again = run_script("train/reproduce.py", *args, timeout=300)
    assert again.returncode == 0 and "3 already finished, 0 to train" in again.stdout
