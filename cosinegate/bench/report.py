"""Bench statistics and outputs: latency percentiles, throughput, skip rate and executed MACs from the
model's own ``gates`` output, JSON, per-device CSV rows, latency histogram PNG."""

import csv
import io
import platform
from pathlib import Path

import numpy as np


CSV_FIELDS = ("time", "device", "backend", "model", "batch", "threads", "input", "mean_ms", "p50_ms", "p90_ms", "p99_ms",
              "throughput", "skip_rate", "executed_macs", "dense_macs")


def latency_stats(ms):
    a = np.asarray(ms, dtype=np.float64)
    return {"mean": float(a.mean()), "p50": float(np.percentile(a, 50)), "p90": float(np.percentile(a, 90)),
            "p99": float(np.percentile(a, 99)), "min": float(a.min()), "count": int(a.size)}


def gate_stats(gates, table, mode, kinds=None):
    """skip_rate over gated blocks, mean executed MACs per image, dense MACs, from gates rows [N, blocks]."""
    g = np.concatenate([np.asarray(x).reshape(-1, len(table.blocks)) for x in gates]) > 0.5
    gated = [i for i, k in enumerate(kinds or [])
             if k in ("gated", "dynamic", "always_run", "always_skipped")] or list(range(g.shape[1]))
    executed = np.array([table.executed(row, mode) for row in g], dtype=np.float64)
    return {"skip_rate": float(1.0 - g[:, gated].mean()), "skip_rate_per_block": [float(1 - v) for v in g.mean(0)],
            "executed_macs": float(executed.mean()), "executed_macs_std": float(executed.std()),
            "dense_macs": int(table.dense), "images": int(g.shape[0])}


def summarize(wall_ms, gpu_ms, batch):
    out = {"latency_ms": latency_stats(wall_ms)}
    out["throughput"] = batch * 1e3 / out["latency_ms"]["mean"]
    if gpu_ms:
        out["gpu_latency_ms"] = latency_stats(gpu_ms)
        out["host_latency_ms"] = out["latency_ms"]
    return out


def device_name():
    model = Path("/proc/device-tree/model")
    if model.is_file():
        return model.read_text(errors="replace").strip("\x00 \n").replace(" ", "-")
    return f"{platform.machine()}-{platform.node()}"


def append_csv(path, row):
    """Append one whole row (CSV_FIELDS) to a per-device CSV, or nothing (see append_line); header on creation."""
    from cosinegate.artifacts import append_line

    def line(values):
        text = io.StringIO()
        csv.writer(text, lineterminator="\n").writerow(values)
        return text.getvalue()

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file() or path.stat().st_size == 0:
        append_line(path, line(CSV_FIELDS))
    append_line(path, line([row.get(name) for name in CSV_FIELDS]))


def csv_row(report):
    lat = report["latency_ms"]
    return {"time": report.get("time"), "device": report.get("device"), "backend": report.get("backend"),
            "model": report.get("model"), "batch": report.get("batch"), "threads": report.get("threads"),
            "input": report.get("input"), "mean_ms": lat["mean"], "p50_ms": lat["p50"], "p90_ms": lat["p90"],
            "p99_ms": lat["p99"], "throughput": report["throughput"], "skip_rate": report.get("skip_rate"),
            "executed_macs": report.get("executed_macs"), "dense_macs": report.get("dense_macs")}


def plot_histogram(path, series, title):
    """Latency histogram PNG; ``series`` {label: ms list}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cosinegate.artifacts import atomic_path

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, ms in series.items():
        ax.hist(ms, bins=50, alpha=0.6, label=label)
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("runs")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
