"""The dense comparison: a conditional graph timed in turns beside the dense baseline (the plain backbone with
the same weights and no gates), the flat twin (every gate head computed), the statically pruned and the
forced-on graphs on the same images, with realized against ideal speedup (both against the gate-free dense)."""

from cosinegate.artifacts import sha256_file
from cosinegate.bench.graphs import forced_on, graph_info


def compare_dense(conditional_path, cond_report, batches, workdir, backend_name, *, checkpoint=None, dense_onnx=None,
                  policy="auto", batch=1, threads=1, warmup=20, iterations=300, duration=None, rounds=5, log=print,
                  labels=None):
    """Time the dense graph, the statically pruned one, the conditional one with every gate forced on and the
    ORT-native conditional graphs beside ``conditional_path`` on ``batches``, in turns; return (summary, walls).

    The other graphs come from ``checkpoint`` (exported with ``policy``) and ``dense_onnx``; each is timed for
    ``iterations`` (or ``duration`` seconds) in ``rounds`` turns. With ``labels`` (one per image of ``batches``) the
    summary adds the selection among conditional, statically pruned and dense graphs (cosinegate.bench.candidates)."""
    from cosinegate.bench.backends import OnnxrtBackend, time_interleaved
    from cosinegate.bench.report import summarize
    from cosinegate.errors import CosineGateError
    from cosinegate.macs import metadata_mac_table

    if backend_name != "onnxrt":
        raise CosineGateError("--compare-dense runs ONNX graphs here; use --backend onnxrt (with --onnx or --checkpoint).")
    if "executed_macs" not in cond_report:
        raise CosineGateError("--compare-dense needs real images for executed MACs; drop --random-input.")
    meta, table, kinds, num_if, classes = graph_info(conditional_path)
    if meta.get("form") != "conditional":
        raise CosineGateError(f"--compare-dense compares a conditional graph; {conditional_path} is {meta.get('form')}.")
    from cosinegate.onnx import export_checkpoint

    dense_path, dense_origin = dense_onnx, str(dense_onnx)
    if dense_path is None:
        dense_origin = f"exported from {checkpoint} (cosinegate export --policy dense; not kept)"
        if not checkpoint:
            raise CosineGateError("--compare-dense needs --dense-onnx FILE or --checkpoint CKPT to export the gate-free dense graph.")
        dense_path = workdir / "dense.onnx"
        export_checkpoint(checkpoint, dense_path, "conditional" if batch == 1 else "masked", batch, policy="dense")
    dense_meta, _, dense_kinds = graph_info(dense_path)[:3]
    if any(kind not in ("dense", "always_run", "dropped") for kind in dense_kinds):
        raise CosineGateError(f"--dense-onnx {dense_path} is not gate-free ({dense_meta.get('form')} form, policy "
                              f"{dense_meta.get('policy')}); the dense baseline is the backbone without gates: export it "
                              "with cosinegate export --policy dense.")
    forced_path, forced_source = workdir / "forced_on.onnx", conditional_path
    if checkpoint:  # every gated block as an If, so forced-on measures the conditional machinery at full MACs
        forced_source = workdir / "conditional_all.onnx"
        export_checkpoint(checkpoint, forced_source, "conditional", batch, policy="conditional-all")
    graphs = {"dense": dense_path}
    if forced_on(forced_source, forced_path):  # a graph without an If has nothing to force (its timing is the graph's own)
        graphs["forced_on"] = forced_path
    flat_macs = metadata_mac_table(meta, classes).executed([True] * len(kinds))  # the model's every block and gate head
    if checkpoint:
        graphs["flat_twin"] = workdir / "flat.onnx"
        export_checkpoint(checkpoint, graphs["flat_twin"], "flat", batch)
    pruned_macs = None
    if checkpoint:
        try:
            pruned_path = workdir / "pruned.onnx"
            export_checkpoint(checkpoint, pruned_path, "masked", batch, policy="auto")
            _, ptable, pkinds = graph_info(pruned_path)[:3]
            graphs["static_pruned"] = pruned_path
            pruned_macs = ptable.executed([k != "always_skipped" for k in pkinds])
        except CosineGateError as exc:
            log(f"static-pruned graph not available: {exc}")
        try:
            graphs["ort_native"], native_forced = ort_native_graphs(checkpoint, policy, batch, threads, workdir)
            if native_forced is not None:
                graphs["ort_native_forced_on"] = native_forced
        except CosineGateError as exc:
            log(f"ORT-native conditional graph not available: {exc}")
    graphs["conditional"] = conditional_path
    # all graphs timed in turns (--rounds), so drift of the machine's state falls on each alike
    from cosinegate.progress import bar

    with bar(log, total=rounds * len(graphs), desc="timing in turns", unit="turn") as turns:
        by_round = time_interleaved({name: OnnxrtBackend(path, threads) for name, path in graphs.items()}, batches,
                                    warmup, iterations, duration, rounds, by_round=True, tick=turns.update)
    runs = {}
    for name, chunks in by_round.items():
        wall = [ms for chunk in chunks for ms in chunk]
        runs[name] = {**summarize(wall, [], batch), "_wall": wall, "_rounds": chunks}
    stat = "p50"  # medians: robust to other jobs on a shared machine; means are in the *_latency_ms entries
    dense_ms, cond_ms = runs["dense"]["latency_ms"][stat], runs["conditional"]["latency_ms"][stat]
    dense_macs, executed = table.dense, cond_report["executed_macs"]
    out = {
        "speedup_statistic": stat, "dense_onnx": dense_origin, "dense_onnx_sha256": sha256_file(dense_path), "conditional_if_count": num_if, "policy": meta.get("policy"),
        "dense_latency_ms": runs["dense"]["latency_ms"], "conditional_latency_ms": runs["conditional"]["latency_ms"],
        "dense_graph": "gate-free backbone, same weights",
        "dense_macs": int(dense_macs), "flat_twin_macs": int(flat_macs), "executed_macs": executed, "executed_mac_ratio": executed / dense_macs,
        "ideal_speedup": dense_macs / executed, "realized_speedup": dense_ms / cond_ms,
    }
    out["forced_on_latency_ms"], out["forced_on_overhead"] = _forced_on(runs, "forced_on", stat, dense_ms)
    out["realized_over_ideal"] = out["realized_speedup"] / out["ideal_speedup"]
    if "ort_native" in runs:
        native_ms = runs["ort_native"]["latency_ms"][stat]
        out.update(
            ort_native_latency_ms=runs["ort_native"]["latency_ms"],
            ort_native_realized_speedup=dense_ms / native_ms,
            ort_native_realized_over_ideal=dense_ms / native_ms / out["ideal_speedup"],
        )
        out["ort_native_forced_on_latency_ms"], out["ort_native_forced_on_overhead"] = _forced_on(
            runs, "ort_native_forced_on", stat, dense_ms)
    if "flat_twin" in runs:
        out.update(flat_twin_latency_ms=runs["flat_twin"]["latency_ms"],
                   flat_twin_speedup=dense_ms / runs["flat_twin"]["latency_ms"][stat])
    if "static_pruned" in runs:
        sp = runs["static_pruned"]["latency_ms"][stat]
        out.update(static_pruned_latency_ms=runs["static_pruned"]["latency_ms"], static_pruned_macs=int(pruned_macs),
                   static_pruned_speedup=dense_ms / sp, conditional_vs_static_pruned=sp / cond_ms)
    if labels is not None:
        out["selection"] = _selection(graphs, runs, batches, labels, threads)
    return out, {k: v["_wall"] for k, v in runs.items()}


def _selection(graphs, runs, batches, labels, threads):
    """cosinegate build-engine --select's rule (cosinegate.bench.candidates.selection_record) applied to the graphs just
    timed (fp32 profile: no accuracy may be lost)."""
    from cosinegate.bench.backends import OnnxrtBackend
    from cosinegate.bench.candidates import accuracy, max_accuracy_drop, selection_record, timing_record
    from cosinegate.parity import FP32

    names = {"conditional": "conditional", "pruned": "static_pruned", "dense": "dense"}
    candidates = {c: {**timing_record(runs[g]["_rounds"]), "accuracy": accuracy(OnnxrtBackend(graphs[g], threads), batches, labels),
                      "num_if": graph_info(graphs[g]).num_if} for c, g in names.items() if g in runs}
    return selection_record(candidates, max_accuracy_drop(FP32))


def _forced_on(runs, name, stat, dense_ms):
    """(latency statistics, overhead against dense) of the forced-on graph ``name``; (None, None) when it was not timed
    (its conditional graph had no If to force)."""
    if name not in runs:
        return None, None
    return runs[name]["latency_ms"], runs[name]["latency_ms"][stat] / dense_ms - 1.0


def ort_native_graphs(checkpoint, policy, batch, threads, workdir):
    """The ORT-native conditional graph (NCHWc kept inside each If) with ``policy``, and its conditional-all twin
    with every gate forced on (None when that twin has no If: nothing to force)."""
    import onnx

    from cosinegate.onnx.ort_native import ort_native_conditional
    from cosinegate.training.checkpoint import load_checkpoint

    from cosinegate.onnx import export_checkpoint

    flat_path = workdir / "flat.onnx"
    if not flat_path.is_file():
        export_checkpoint(checkpoint, flat_path, "flat", batch)
    flat = onnx.load(str(flat_path))
    skip_rates = load_checkpoint(checkpoint).get("skip_rates")
    native, native_all = workdir / "ort_native.onnx", workdir / "ort_native_all.onnx"
    onnx.save(ort_native_conditional(flat, policy, skip_rates, threads), str(native))
    onnx.save(ort_native_conditional(flat, "conditional-all", skip_rates, threads), str(native_all))
    forced = workdir / "ort_native_forced_on.onnx"
    return native, forced if forced_on(native_all, forced) else None
