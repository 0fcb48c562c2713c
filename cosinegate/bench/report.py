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


def gate_stats(gates, table, kinds=None):
    """skip_rate over gated blocks, mean executed MACs per image, dense MACs, from gates rows [N, blocks]."""
    g = np.concatenate([np.asarray(x).reshape(-1, len(table.blocks)) for x in gates]) > 0.5
    gated = [i for i, k in enumerate(kinds or [])
             if k in ("gated", "dynamic", "always_run", "always_skipped")] or list(range(g.shape[1]))
    executed = np.array([table.executed(row) for row in g], dtype=np.float64)
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


def check_csv_header(path):
    """Refuse to append to an existing CSV whose header is not CSV_FIELDS (another tool's file, an older layout)."""
    from cosinegate.errors import CosineGateError

    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return
    try:
        with open(path, newline="", encoding="utf-8", errors="replace") as f:
            header = next(csv.reader(f), [])
    except OSError as exc:
        raise CosineGateError(f"--csv {path} cannot be read ({exc.strerror or type(exc).__name__}); fix its permissions "
                              "or name another file.") from exc
    if tuple(header) != CSV_FIELDS:
        raise CosineGateError(f"--csv {path} has another header ({','.join(header)[:80]}); name a new file or a CSV "
                              "that cosinegate bench wrote.")


def append_csv(path, row):
    """Append one whole row (CSV_FIELDS) to a per-device CSV, or nothing (see append_line); header on creation."""
    from cosinegate.artifacts import append_line

    def line(values):
        text = io.StringIO()
        csv.writer(text, lineterminator="\n").writerow(values)
        return text.getvalue()

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    check_csv_header(path)
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


def latency_range(series, quantile=99.0, pad=1.15, spread=3.0):
    """(low, high) x-range of latency histograms that no outlier can stretch: up to the `quantile`-th
    percentile of the slowest series (times `pad`) but at most `spread` times the largest median."""
    low = min(float(np.min(ms)) for ms in series.values())
    high = max(float(np.percentile(ms, quantile)) for ms in series.values()) * pad
    high = min(high, spread * max(float(np.median(ms)) for ms in series.values()))
    return low * 0.95, max(high, low * 1.05)


def plot_histogram(path, series, title, speedups=None, ideal=None):
    """Latency histogram PNG, one histogram per graph (``series`` {readable label: ms list}); runs beyond
    the x-range are counted in the legend and marked at the right edge. ``speedups`` {label: speedup over
    dense} adds a bar chart beside it, with the ideal (MAC-ratio) speedup as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cosinegate.artifacts import atomic_path

    wide = bool(speedups)
    fig, axes = plt.subplots(1, 2 if wide else 1, figsize=(13 if wide else 7, 4.5),
                             gridspec_kw={"width_ratios": [3, 2]} if wide else None)
    ax = axes[0] if wide else axes
    low, high = latency_range(series)
    bins = np.linspace(low, high, 60)
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    colors = {label: cycle[i % len(cycle)] for i, label in enumerate(list(series) + [n for n in (speedups or {}) if n not in series])}
    for label, ms in series.items():
        ms = np.asarray(ms)
        color = colors[label]
        beyond = int((ms > high).sum())
        text = f"{label}: p50 {np.median(ms):.3f} ms" + (f", {beyond} beyond {high:.2f} ms" if beyond else "")
        ax.hist(ms[ms <= high], bins=bins, alpha=0.5, color=color, label=text, histtype="stepfilled")  # beyond: counted, marked
        if beyond:
            ax.plot([high], [0], marker=">", color=color, markersize=9, clip_on=False)
    ax.set_xlim(low, high)
    ax.set_xlabel("latency per batch (ms)")
    ax.set_ylabel("runs")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="upper right")
    if wide:
        names = list(speedups)
        values = [speedups[n] for n in names]
        bars = axes[1].barh(names, values, color=[colors[n] for n in names], alpha=0.7)
        axes[1].axvline(1.0, color="black", linewidth=0.8)
        if ideal:
            axes[1].axvline(ideal, color="tab:red", linestyle="--", label=f"ideal (MAC ratio) {ideal:.3f}x")
            axes[1].legend(fontsize=8, loc="lower right")
        for bar, value in zip(bars, values):
            axes[1].text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {value:.3f}x", va="center", fontsize=8)
        axes[1].set_xlabel("speedup over the dense backbone (p50)")
        axes[1].invert_yaxis()
        axes[1].set_xlim(0, max(values + [ideal or 0]) * 1.25)
        axes[1].tick_params(axis="y", labelsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
