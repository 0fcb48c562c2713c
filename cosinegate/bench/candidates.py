"""Choosing the deployed graph: the conditional, statically pruned and gate-free dense candidates timed by
one harness, their accuracy on labelled reference images, and the fastest within tolerance.

Every candidate is timed in turns with the others (``time_interleaved``: warm-up, then rounds) on the same
real images; the latency statistic is the median. A candidate is eligible when its top-1 accuracy is within
``max_drop`` of the conditional candidate's (the conditional graph is what PyTorch's routing deploys); the
fastest eligible one is chosen (a candidate whose engine failed parity is not eligible). ``forced`` picks one by name instead, and the record says so.
"""

import numpy as np

from cosinegate.errors import CosineGateError

CANDIDATES = ("conditional", "pruned", "dense")
POLICY = {"conditional": "auto", "pruned": "pruned", "dense": "dense"}
SELECT = ("fastest", *CANDIDATES)
STAT = "p50"


def accuracy(backend, batches, labels):
    """Top-1 accuracy of ``backend`` over ``batches`` against ``labels`` (one label per image, in order)."""
    predicted = np.concatenate([np.asarray(backend.run(x)[0]["logits"]).argmax(1) for x in batches])
    return float((predicted == np.asarray(labels)[: predicted.size]).mean())


def max_accuracy_drop(tolerance):
    """Accuracy a candidate may lose against the conditional one: the profile's allowed top-1 disagreement."""
    return max(0.0, 1.0 - tolerance.min_top1)


def eligible_names(candidates, max_drop):
    """Candidates within ``max_drop`` accuracy of the conditional one whose parity did not fail (it always is)."""
    if "conditional" not in candidates:
        raise CosineGateError("selection needs the conditional candidate as the accuracy reference.")
    floor = candidates["conditional"]["accuracy"] - max_drop
    return [n for n, c in candidates.items()
            if n == "conditional" or c["accuracy"] >= floor - 1e-12 and c.get("parity_passed", True)]


def choose(candidates, max_drop, forced=None):
    """(name, reason) from {name: {"latency_ms": {...}, "accuracy": float}}; see the module docstring."""
    if forced and forced != "fastest":
        if forced not in candidates:
            raise CosineGateError(f"--select {forced}: no such candidate was built (have {', '.join(candidates)}).")
        return forced, f"forced by --select {forced}"
    eligible = {n: candidates[n] for n in eligible_names(candidates, max_drop)}
    name = min(eligible, key=lambda n: eligible[n]["latency_ms"][STAT])
    ms = eligible[name]["latency_ms"][STAT]
    others = ", ".join(f"{n} {c['latency_ms'][STAT]:.3f} ms" for n, c in candidates.items() if n != name)
    dropped = [n for n in candidates if n not in eligible]
    reason = f"fastest ({STAT} {ms:.3f} ms; {others}) with accuracy {eligible[name]['accuracy']:.4f} within {max_drop:.4f} " \
             f"of the conditional {candidates['conditional']['accuracy']:.4f}"
    if dropped:
        reason += f"; {', '.join(dropped)} out of tolerance"
    return name, reason


def compare_candidates(backends, batches, labels, max_drop, warmup=20, iterations=300, rounds=5, forced=None, extra=None,
                       clock="wall", log=None):
    """Time and score every backend ({name: backend with run(x)}); return the selection record.

    ``extra``: {name: dict} of facts to keep with each candidate (graph path, If count, parity verdict);
    ``clock``: "wall" (host) or "gpu" (CUDA events of the TensorRT backend); ``log``: the caller's, for the
    progress bar (cosinegate.progress)."""
    from cosinegate.bench.backends import time_interleaved
    from cosinegate.bench.report import latency_stats
    from cosinegate.progress import bar

    with bar(log, total=rounds * len(backends), desc="timing candidates", unit="turn") as turns:
        walls = time_interleaved(backends, batches, warmup, iterations, None, rounds, clock, tick=turns.update)
    candidates = {name: {"latency_ms": latency_stats(walls[name]), "accuracy": accuracy(b, batches, labels),
                         **(extra or {}).get(name, {})} for name, b in backends.items()}
    name, reason = choose(candidates, max_drop, forced)
    for n in eligible_names(candidates, max_drop):
        candidates[n]["eligible"] = True
    for c in candidates.values():
        c.setdefault("eligible", False)
    return {"chosen": name, "reason": reason, "statistic": STAT, "clock": clock, "max_accuracy_drop": max_drop,
            "images": int(len(labels)),
            "candidates": candidates}


def selection_lines(selection):
    """The candidate table as printable lines, the winner marked."""
    lines = [f"{'candidate':12s} {'p50 ms':>8s} {'p99 ms':>8s} {'accuracy':>9s} {'If':>3s}"]
    for name, c in selection["candidates"].items():
        mark = "  <- chosen" if name == selection["chosen"] else ""
        lines.append(f"{name:12s} {c['latency_ms']['p50']:8.3f} {c['latency_ms']['p99']:8.3f} {c['accuracy']:9.4f} "
                     f"{c.get('num_if', ''):>3}{mark}")
    lines.append(f"chosen: {selection['chosen']} ({selection['reason']})")
    return lines


def select_onnxrt(graphs, batches, labels, max_drop, threads=1, warmup=20, iterations=300, rounds=5, forced=None, log=None):
    """The selection on ONNX Runtime's CPU provider: ``graphs`` {candidate: ONNX path}."""
    from cosinegate.bench.backends import OnnxrtBackend
    from cosinegate.bench.graphs import graph_info

    backends = {name: OnnxrtBackend(path, threads) for name, path in graphs.items()}
    extra = {name: {"onnx": str(path), "num_if": graph_info(path)[3]} for name, path in graphs.items()}
    record = compare_candidates(backends, batches, labels, max_drop, warmup, iterations, rounds, forced, extra, log=log)
    record.update(backend="onnxrt", threads=threads)
    return record
