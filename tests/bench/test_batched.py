"""compare_batched: the graphs it times and what it reports (structure and MAC arithmetic, no timing goals)."""

import numpy as np
import torch

from cosinegate.bench.batched import compare_batched
from cosinegate.data.normalization import CIFAR10
from cosinegate.macs import model_mac_table
from cosinegate.models import build_model


def test_compare_batched_reports_every_graph_and_the_ideal_from_executed_macs():
    torch.manual_seed(0)
    model = build_model({"backbone": "resnet20", "mode": "predictive"}, 10, 32).eval()
    model.normalization = dict(CIFAR10)
    images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    result = compare_batched(model, images, skip=0.5, warmup=1, iterations=2, rounds=1).to_json()
    assert set(result["latency_ms"]) == {"dense", "masked", "compact", "compact_all_run", "compact_all_skip"}
    assert all(v["p50"] > 0 for v in result["latency_ms"].values()) and result["speedup_vs_dense"]["dense"] == 1.0
    table = model_mac_table(model)
    # 2 of the 4 images skip each block, so the mean executed MACs are midway between all-run and all-skip
    both = (table.executed([True] * 9) + table.executed([False] * 9)) / 2
    assert abs(result["executed_mac_ratio"] - both / table.dense) < 1e-9
    assert abs(result["ideal_speedup"] * result["executed_mac_ratio"] - 1.0) < 1e-9
    assert result["batch"] == 4 and result["skip"] == 0.5
