"""Batch > 1 on ONNX Runtime's CPU provider: the compact form (each gated block runs on the gathered rows whose
gate is on) beside the masked form (every block computed) and the gate-free dense graph, timed in turns.

One batch of images; the gates are moved (cosinegate.bench.gate_patterns, as cosinegate force-gates does) so
every gated block skips ``skip`` of exactly those images; the compact graph is also timed with every gate on
(its overhead against dense) and every gate off. Ideal speedup: dense MACs over the executed MACs of the
images' decisions (cosinegate.macs); realized: dense p50 over the graph's p50.
"""

import copy
from dataclasses import dataclass, field

import numpy as np


@dataclass
class BatchedComparison:
    """p50 latencies (ms) per graph and what they mean against dense."""

    backbone: str
    image_size: int
    batch: int
    skip: float
    threads: int
    ideal_speedup: float
    executed_mac_ratio: float
    latency_ms: dict = field(default_factory=dict)  # graph -> {"p50", "mean", ...}

    def speedup(self, graph):
        return self.latency_ms["dense"]["p50"] / self.latency_ms[graph]["p50"]

    def to_json(self):
        out = {k: v for k, v in self.__dict__.items()}
        out["speedup_vs_dense"] = {g: self.speedup(g) for g in self.latency_ms}
        out["compact_realized_over_ideal"] = self.speedup("compact") / self.ideal_speedup
        out["compact_vs_masked"] = self.latency_ms["masked"]["p50"] / self.latency_ms["compact"]["p50"]
        return out


def compare_batched(model, images, skip=0.5, threads=1, warmup=10, iterations=100, rounds=5):
    """Time dense, masked and compact graphs of ``model`` (predictive, eval) on ``images`` (uint8 NHWC, one batch)."""
    from cosinegate.bench.backends import OnnxrtGraph, time_interleaved
    from cosinegate.bench.gate_patterns import force_skip_fraction
    from cosinegate.bench.report import summarize
    from cosinegate.data.augment import to_tensor
    from cosinegate.macs import model_mac_table
    from cosinegate.onnx import build_flat_graph, compact, mask, optimize_flat

    batch = len(images)
    forced = {s: force_skip_fraction(copy.deepcopy(model), images, s) for s in (skip, 0.0, 1.0)}
    flats = {s: optimize_flat(build_flat_graph(m, batch)) for s, m in forced.items()}
    graphs = {
        "dense": mask(flats[skip], "dense"),
        "masked": mask(flats[skip], "conditional-all"),
        "compact": compact(flats[skip], "conditional-all"),
        "compact_all_run": compact(flats[0.0], "conditional-all"),
        "compact_all_skip": compact(flats[1.0], "conditional-all"),
    }
    x = to_tensor(images, "cpu", model.normalization).numpy()
    backends = {name: OnnxrtGraph(g, threads) for name, g in graphs.items()}
    gates = backends["compact"].run(x)[0]["gates"] > 0.5
    table = model_mac_table(forced[skip])
    executed = float(np.mean([table.executed(row) for row in gates]))
    walls = time_interleaved(backends, [x], warmup, iterations, None, rounds)
    return BatchedComparison(model.backbone, model.image_size, batch, skip, threads, table.dense / executed,
                             executed / table.dense, {name: summarize(wall, [], batch)["latency_ms"] for name, wall in walls.items()})
