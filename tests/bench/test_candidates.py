"""One selection rule (issue 25, item 5): the simpler graph (dense > pruned > conditional) is kept unless a more
complex one is faster by more than the measured spread; build_engine.py and bench.py --compare-dense apply it
through the same function."""

import numpy as np
import pytest

from cosinegate.bench import candidates as cands
from cosinegate.bench.candidates import choose, selection_lines, spread_ms, timing_record
from cosinegate.bench.graphs import GraphInfo


def timed(rounds, acc=0.9):
    """A candidate timed in rounds of synthetic milliseconds."""
    return {**timing_record([list(r) for r in rounds]), "accuracy": acc}


def rounds_around(median, jitter, rounds=5, per_round=9):
    """Per-round timings whose medians differ by ``jitter`` across rounds (the measured spread)."""
    return [[median + jitter * (k / (rounds - 1) - 0.5)] * per_round for k in range(rounds)]


def test_spread_is_the_larger_of_iqr_and_round_medians():
    assert spread_ms([[1.0] * 5, [1.2] * 5]) == pytest.approx(0.2)  # round medians 1.0 and 1.2, IQR 0.2 too
    assert spread_ms([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]]) == 0.0
    assert spread_ms([[1.0, 3.0, 1.0, 3.0], [1.0, 3.0, 1.0, 3.0]]) == pytest.approx(2.0)  # IQR, same medians


def test_a_faster_graph_within_the_spread_loses_to_the_simpler_one():
    c = {"conditional": timed(rounds_around(0.97, 0.08)), "pruned": timed(rounds_around(0.98, 0.08)),
         "dense": timed(rounds_around(1.00, 0.08))}
    name, reason = choose(c, 0.0)
    assert name == "dense", reason  # 3% faster, 8% spread: noise
    assert "pruned is 2.0% faster than dense, within the spread 8.0%: dense kept" in reason
    assert "conditional is 3.0% faster than dense, within the spread 8.0%: dense kept" in reason


def test_a_faster_graph_beyond_the_spread_wins():
    c = {"conditional": timed(rounds_around(0.70, 0.02)), "pruned": timed(rounds_around(0.97, 0.02)),
         "dense": timed(rounds_around(1.00, 0.02))}
    name, reason = choose(c, 0.0)
    assert name == "conditional", reason
    assert "pruned is 3.0% faster than dense, beyond the spread 2.0%: pruned chosen" in reason
    assert "conditional is 27.8% faster than pruned, beyond the spread 2.1%: conditional chosen" in reason
    # accuracy eligibility stays first: an out-of-tolerance faster graph never wins
    c["conditional"]["accuracy"], c["pruned"]["accuracy"], c["dense"]["accuracy"] = 0.9, 0.8, 0.8
    assert choose(c, 0.01)[0] == "conditional"


def test_the_table_shows_the_spread_and_says_why():
    c = {"conditional": timed(rounds_around(0.97, 0.08)), "pruned": timed(rounds_around(0.98, 0.08)),
         "dense": timed(rounds_around(1.00, 0.08))}
    lines = selection_lines(cands.selection_record(c, 0.0))
    assert lines[0].split() == ["candidate", "p50", "ms", "p99", "ms", "spread", "accuracy", "If"]
    assert "<- chosen" in next(line for line in lines if line.startswith("dense"))
    assert "within the spread" in lines[-1]
    assert not any(line.startswith("warning:") for line in lines)  # an 8% spread ranks them


def test_timings_too_noisy_to_rank_say_so():
    """Board walkthrough: on a loaded CPU the desktop kept dense "within the spread 2485.0%" without a word that the
    timings could not rank anything."""
    c = {"conditional": timed(rounds_around(0.97, 0.08)), "pruned": timed(rounds_around(0.98, 0.08)),
         "dense": timed(rounds_around(1.00, 1.5))}
    lines = selection_lines(cands.selection_record(c, 0.0))
    share = 100 * c["dense"]["spread_ms"] / c["dense"]["latency_ms"]["p50"]
    assert share > 100 * cands.NOISY and lines[-1] == (
        f"warning: dense's timings spread over {share:.0f}% of its median (other work on this machine?): the choice rests "
        "on noise; time again on an idle machine, or choose with --select NAME")


def test_build_engine_and_bench_choose_by_the_same_function(monkeypatch):
    """The selection of build_engine.py (compare_candidates) and of bench.py --compare-dense (compare._selection)
    both go through candidates.choose, and on the same timings they choose the same candidate."""
    from cosinegate.bench import backends, compare

    rounds = {"conditional": rounds_around(0.97, 0.08), "pruned": rounds_around(0.98, 0.08),
              "dense": rounds_around(1.00, 0.08)}

    class Fake:
        def __init__(self, *args, **kwargs):
            pass

        def run(self, x):
            return {"logits": np.array([[1.0, 0.0]])}, None

    calls = []
    real = cands.choose
    monkeypatch.setattr(cands, "choose", lambda *a, **k: calls.append(a) or real(*a, **k))
    monkeypatch.setattr(backends, "time_interleaved", lambda b, *a, **k: {n: rounds[n] for n in b})
    monkeypatch.setattr(backends, "OnnxrtBackend", Fake)
    monkeypatch.setattr(compare, "graph_info", lambda path: GraphInfo({}, None, [], 0, 10))  # no graphs here: 0 If
    batches, labels = [np.zeros((1, 1))], np.zeros(1, np.int64)
    built = cands.compare_candidates({n: Fake() for n in rounds}, batches, labels, 0.0)
    runs = {g: {"_rounds": rounds[c]} for c, g in {"conditional": "conditional", "pruned": "static_pruned",
                                                    "dense": "dense"}.items()}
    benched = compare._selection({g: None for g in runs}, runs, batches, labels, 1)
    assert len(calls) == 2 and built["chosen"] == benched["chosen"] == "dense"
    assert built["reason"] == benched["reason"]
