"""Choosing the deployed graph: the conditional, statically pruned and gate-free dense candidates timed by
one harness, their accuracy on labelled reference images, and one rule (``choose``) that cosinegate build-engine
--select and cosinegate bench --compare-dense both apply.

Every candidate is timed in turns with the others (``time_interleaved``: warm-up, then rounds) on the same
real images; the latency statistic is the median. A candidate is eligible when its top-1 accuracy is within
``max_drop`` of the conditional candidate's (the conditional graph is what PyTorch's routing deploys) and its
engine did not fail parity. Among the eligible, the simpler graph is preferred (dense > pruned > conditional:
fewer kinds of node for a runtime to get wrong, no If): a more complex one is chosen only when its median is
lower than the kept one's by more than the measured spread of either (``spread_ms``: the larger of the timings'
interquartile range and the range of the per-round medians). ``forced`` picks one by name instead, and the
record says so.
"""

import numpy as np

from cosinegate.errors import CosineGateError

CANDIDATES = ("conditional", "pruned", "dense")
POLICY = {"conditional": "auto", "pruned": "pruned", "dense": "dense"}
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


SIMPLER_FIRST = ("dense", "pruned", "conditional")  # the preference among candidates of equal measured speed


def spread_ms(rounds_ms):
    """The noise a median difference is weighed against, from one candidate's timings in rounds ([ms list per
    round]): the larger of the interquartile range of all timings and the range of the per-round medians."""
    flat = np.concatenate([np.asarray(r, dtype=np.float64) for r in rounds_ms if len(r)])
    iqr = float(np.percentile(flat, 75) - np.percentile(flat, 25))
    medians = [float(np.median(r)) for r in rounds_ms if len(r)]
    return max(iqr, max(medians) - min(medians))


def timing_record(rounds_ms):
    """A candidate's timing facts from its timings in rounds: latency statistics, per-round medians, spread."""
    from cosinegate.bench.report import latency_stats

    return {"latency_ms": latency_stats([ms for r in rounds_ms for ms in r]),
            "round_p50_ms": [float(np.median(r)) for r in rounds_ms if len(r)], "spread_ms": spread_ms(rounds_ms)}


def _simplicity(name):
    return SIMPLER_FIRST.index(name) if name in SIMPLER_FIRST else len(SIMPLER_FIRST)


def choose(candidates, max_drop, forced=None):
    """(name, reason) from {name: {"latency_ms": {"p50": ...}, "spread_ms": float (0 without), "accuracy": float}}:
    starting from the simplest eligible candidate, a more complex one replaces the one kept only when its median is
    lower by more than the larger spread of the two (module docstring); the reason says, per comparison, how much
    faster the more complex graph was and whether that was within the spread."""
    if forced and forced != "fastest":
        if forced not in candidates:
            raise CosineGateError(f"--select {forced}: no such candidate was built (have {', '.join(candidates)}).")
        return forced, f"forced by --select {forced}"
    eligible = {n: candidates[n] for n in eligible_names(candidates, max_drop)}

    def p50(n):
        return eligible[n]["latency_ms"][STAT]

    def margin(a, b):
        return max(float(eligible[a].get("spread_ms") or 0.0), float(eligible[b].get("spread_ms") or 0.0))

    name, notes = None, []
    for n in sorted(eligible, key=_simplicity):  # simplest first; a more complex one must win by more than the spread
        if name is None:
            name = n
        elif p50(n) >= p50(name):
            notes.append(f"{n} is not faster than {name}")
        else:
            beyond = p50(name) - p50(n) > margin(name, n)
            notes.append(spread_note(n, name, p50(n), p50(name), margin(name, n), kept=not beyond))
            name = n if beyond else name
    ms = p50(name)
    others = ", ".join(f"{n} {c['latency_ms'][STAT]:.3f} ms" for n, c in candidates.items() if n != name)
    dropped = [n for n in candidates if n not in eligible]
    reason = f"{STAT} {ms:.3f} ms ({others}), accuracy {eligible[name]['accuracy']:.4f} (the conditional's " \
             f"{candidates['conditional']['accuracy']:.4f}; at most {max_drop:.4f} lower is allowed)"
    if dropped:
        notes.append(f"{', '.join(dropped)} out of tolerance")
    return name, "; ".join([reason, *notes])


def spread_note(faster, simpler, faster_ms, simpler_ms, spread, kept):
    """'pruned is 3.0% faster than dense, within the spread 5.0%: dense kept' (or beyond it: pruned chosen)."""
    gain = 100.0 * (simpler_ms - faster_ms) / simpler_ms if simpler_ms > 0 else 0.0
    rel = 100.0 * spread / simpler_ms if simpler_ms > 0 else 0.0
    if kept:
        return f"{faster} is {gain:.1f}% faster than {simpler}, within the spread {rel:.1f}%: {simpler} kept"
    return f"{faster} is {gain:.1f}% faster than {simpler}, beyond the spread {rel:.1f}%: {faster} chosen"


def selection_record(candidates, max_drop, forced=None):
    """The selection record (chosen, reason, eligibility marked) of timed and scored ``candidates``: what
    cosinegate build-engine and cosinegate bench --compare-dense both record."""
    name, reason = choose(candidates, max_drop, forced)
    eligible = set(eligible_names(candidates, max_drop))
    for n, c in candidates.items():
        c["eligible"] = n in eligible
    return {"chosen": name, "reason": reason, "rule": "simpler kept unless a faster one wins by more than the spread", "statistic": STAT,
            "max_accuracy_drop": max_drop, "candidates": candidates}


def compare_candidates(backends, batches, labels, max_drop, warmup=20, iterations=300, rounds=5, forced=None, extra=None,
                       clock="wall", log=None):
    """Time and score every backend ({name: backend with run(x)}); return the selection record.

    ``extra``: {name: dict} of facts to keep with each candidate (graph path, If count, parity verdict);
    ``clock``: "wall" (host) or "gpu" (CUDA events of the TensorRT backend); ``log``: the caller's, for the
    progress bar (cosinegate.progress)."""
    from cosinegate.bench.backends import time_interleaved
    from cosinegate.progress import bar

    with bar(log, total=rounds * len(backends), desc="timing candidates", unit="turn") as turns:
        rounds_ms = time_interleaved(backends, batches, warmup, iterations, None, rounds, clock, by_round=True,
                                     tick=turns.update)
    candidates = {name: {**timing_record(rounds_ms[name]), "accuracy": accuracy(b, batches, labels),
                         **(extra or {}).get(name, {})} for name, b in backends.items()}
    record = selection_record(candidates, max_drop, forced)
    record.update(clock=clock, images=int(len(labels)))
    return record


NOISY = 0.5  # a spread above this share of a candidate's median: the timings cannot rank the candidates


def selection_lines(selection):
    """The candidate table as printable lines (median, p99, spread, accuracy, If count), the winner marked."""
    lines = [f"{'candidate':12s} {'p50 ms':>8s} {'p99 ms':>8s} {'spread':>8s} {'accuracy':>9s} {'If':>3s}"]
    for name, c in selection["candidates"].items():
        mark = "  <- chosen" if name == selection["chosen"] else ""
        p99 = c["latency_ms"].get("p99")
        spread = c.get("spread_ms")
        lines.append(f"{name:12s} {c['latency_ms']['p50']:8.3f} {'' if p99 is None else f'{p99:8.3f}':>8s} "
                     f"{'' if spread is None else f'{spread:8.3f}':>8s} {c['accuracy']:9.4f} {c.get('num_if', ''):>3}{mark}")
    lines.append(f"chosen: {selection['chosen']} ({selection['reason']})")
    noisy = {n: c["spread_ms"] / c["latency_ms"]["p50"] for n, c in selection["candidates"].items()
             if c.get("spread_ms") and c["latency_ms"]["p50"] > 0 and c["spread_ms"] > NOISY * c["latency_ms"]["p50"]}
    if noisy:
        worst = max(noisy, key=noisy.get)
        lines.append(f"warning: {worst}'s timings spread over {100 * noisy[worst]:.0f}% of its median (other work on this "
                     "machine?): the choice rests on noise; time again on an idle machine, or choose with --select NAME")
    return lines


def select_onnxrt(graphs, batches, labels, max_drop, log=None):
    """The selection on ONNX Runtime's CPU provider, one thread: ``graphs`` {candidate: ONNX path}."""
    from cosinegate.bench.backends import OnnxrtBackend
    from cosinegate.bench.graphs import graph_info

    backends = {name: OnnxrtBackend(path, 1) for name, path in graphs.items()}
    extra = {name: {"onnx": str(path), "num_if": graph_info(path).num_if} for name, path in graphs.items()}
    record = compare_candidates(backends, batches, labels, max_drop, extra=extra, log=log)
    record.update(backend="onnxrt", threads=1)
    return record
