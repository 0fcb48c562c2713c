"""ONNX export of CosineGate checkpoints: the flat twin, graph passes, and the deployable forms.

Forms: `flat` (every block runs; the twin for graph passes and quantization),
`masked` (any batch; each dynamic block selected per sample), `conditional`
(batch 1; one `If` per dynamic block, so a skipped block is not computed) and `compact`
(any batch; each dynamic block runs on the gathered rows whose gate is on).
"""

import contextlib
import json
import os
from pathlib import Path

from cosinegate.artifacts import MAX_JSON_BYTES, atomic_write_bytes, atomic_write_json, sha256_bytes, sha256_file
from cosinegate.errors import CosineGateError
from cosinegate.graphmeta import GRAPH_FORMS as FORMS, block_kinds, if_count
from cosinegate.layernames import check_layer_names
from cosinegate.onnx.checks import assert_clean, graph_problems, is_toolkit_onnx, load_toolkit_onnx, read_onnx
from cosinegate.onnx.conditionalize import (
    PAPER_CONDITIONAL,
    POLICIES,
    PAPER_COMPACT,
    block_node_names,
    compact,
    conditionalize,
    mask,
    resolve_policy,
)
from cosinegate.onnx.card import card_of, model_card
from cosinegate.onnx.costtable import load_table, plain_by_cost
from cosinegate.onnx.export import DEFAULT_OPSET, GATE_RULES, build_flat_graph, check_opset, get_metadata, set_metadata
from cosinegate.onnx.passes import optimize_flat

MANIFEST_FORMAT = "cosinegate-onnx-manifest-v1"
MAX_BATCH = 4096


def load_skip_rates(path):
    """Per-block skip rates for policy auto from a file from anywhere: a JSON list of numbers in [0, 1], or an object
    (cosinegate evaluate's report) with "skip_rates"; anything else is one line."""
    from cosinegate.artifacts import read_json

    data = read_json(path, "skip-rates file", mapping=False)
    rates = data.get("skip_rates") if isinstance(data, dict) else data
    if not _are_rates(rates):
        raise CosineGateError(f"{path} holds no skip rates: give a JSON list of numbers in [0, 1] or an object with 'skip_rates'.")
    return [float(r) for r in rates]


def _are_rates(rates):
    return isinstance(rates, list) and all(type(r) in (int, float) and 0.0 <= r <= 1.0 for r in rates)  # NaN fails too


def manifest_skip_rates(onnx_path):
    """The per-block skip rates in the ``<onnx>.json`` manifest of this graph (matching_manifest); None without such a
    manifest or when it was exported without rates. A manifest of this graph with bad blocks or rates is one line."""
    manifest = matching_manifest(onnx_path)
    if manifest is None:
        return None
    blocks = manifest.get("blocks")
    rates = [b.get("skip_rate") for b in blocks] if isinstance(blocks, list) and all(isinstance(b, dict) for b in blocks) else None
    if rates is not None and all(r is None for r in rates):
        return None
    if not rates or not _are_rates(rates):
        raise CosineGateError(f"ONNX manifest {onnx_path}.json names this graph but its blocks' skip rates are not numbers "
                              "in [0, 1], one per block; export the graph again (cosinegate export) or delete the manifest.")
    return [float(r) for r in rates]


def export_checkpoint(checkpoint, out, form="conditional", batch=1, opset=DEFAULT_OPSET, policy="auto", skip_rates=None,
                      if_cost_table=None):
    """Export a checkpoint to `out` (.onnx) plus `<out>.json` manifest; return the manifest.

    skip_rates: per-block held-out skip rates for policy `auto`; default the checkpoint's.
    if_cost_table: a `cosinegate bench --if-cost` JSON table; policy `auto` keeps plain the dynamic blocks whose
    expected saving (skip rate x block latency) is below their If cost.
    Both files are written atomically, and only after the graph passed its checks.
    """
    from cosinegate.training.checkpoint import model_from_checkpoint

    if form not in FORMS:
        raise CosineGateError(f"unknown form {form!r}; choose one of {', '.join(FORMS)}.")
    if policy not in POLICIES:
        raise CosineGateError(f"unknown policy {policy!r}; choose one of {', '.join(POLICIES)}.")
    check_opset(opset)
    if not 1 <= batch <= MAX_BATCH:
        raise CosineGateError(f"--batch {batch}: a static batch from 1 to {MAX_BATCH} (the masked graph's activations grow "
                              "with it); pick a batch the device will run.")
    if form == "conditional" and batch != 1:
        raise CosineGateError(
            f"--form conditional needs --batch 1 (got {batch}): an If condition is one scalar, so a batch cannot "
            "take different branches; use --form compact for batches (each block runs only on the images whose gate is on)."
        )
    model, state = model_from_checkpoint(checkpoint)
    if form == "conditional" and model.mode == "paper":
        raise CosineGateError(PAPER_CONDITIONAL)
    if form == "compact" and model.mode == "paper":
        raise CosineGateError(PAPER_COMPACT)
    skip_source = "argument" if skip_rates is not None else "checkpoint"
    skip_rates = skip_rates if skip_rates is not None else state.get("skip_rates")
    flat = optimize_flat(build_flat_graph(model, batch, opset))
    plain, cost = (), None
    if if_cost_table is not None and form != "flat":
        plain, cost = _plain_by_cost(if_cost_table, flat, policy, skip_rates)
    if form == "conditional":
        graph = conditionalize(flat, policy, skip_rates, plain)
    elif form == "masked":
        graph = mask(flat, policy, skip_rates, plain)
    elif form == "compact":
        graph = compact(flat, policy, skip_rates, plain)
    else:
        graph = flat
    set_metadata(graph, **model_card(checkpoint, state, model))
    assert_clean(graph)
    check_layer_names(graph, f"export of {checkpoint}")
    data = graph.SerializeToString()
    manifest = _manifest(checkpoint, graph, model, data, opset, batch, skip_rates, skip_source)
    if cost is not None:
        manifest["if_cost"] = cost
    write_graph_and_manifest(out, data, manifest)
    return manifest


def write_graph_and_manifest(out, data, manifest):
    """Write the graph bytes and its manifest (which names them by hash) as a pair.

    The old manifest goes first and the new one comes last: a kill in between leaves a graph without
    a manifest, never a graph beside another graph's manifest (see matching_manifest)."""
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        os.remove(f"{out}.json")
    atomic_write_bytes(out, data)
    atomic_write_json(f"{out}.json", manifest)


def matching_manifest(onnx_path):
    """The ``<onnx>.json`` manifest if it is there and names this graph's sha256, else None."""
    path = Path(f"{onnx_path}.json")
    if not path.is_file() or path.stat().st_size > MAX_JSON_BYTES:
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return manifest if isinstance(manifest, dict) and manifest.get("onnx_sha256") == sha256_file(onnx_path) else None


def _plain_by_cost(path, flat, policy, skip_rates):
    """(dynamic blocks kept plain by the If cost table at ``path``, its manifest record)."""
    if policy != "auto":
        raise CosineGateError(f"--if-cost-table applies to --policy auto, not {policy}; drop one of them.")
    meta = get_metadata(flat)
    kinds = resolve_policy(block_kinds(meta), policy, skip_rates)
    table = load_table(path)
    plain = plain_by_cost(table, skip_rates, kinds, meta["backbone"], len(kinds))
    return plain, {"table": str(path), "table_sha256": sha256_file(path), "backend": table.get("backend"),
                   "device": table.get("device"), "plain_by_cost": plain}


def _manifest(checkpoint, graph, model, data, opset, batch, skip_rates, skip_source):
    meta = get_metadata(graph)
    rule = GATE_RULES.get(model.mode)
    blocks = []
    for index, block in enumerate(meta["blocks"]):
        entry = {"block": index, "kind": block["kind"], "post": block["post"]}
        if skip_rates is not None and model.mode != "none":
            entry["skip_rate"] = float(skip_rates[index])
        if block["kind"] in ("gated", "dynamic"):
            entry["gate"] = {"logit": f"block{index}/gate/logit", "decision": f"block{index}/gate/decision", "rule": rule}
        blocks.append(entry)
    return {
        "format": MANIFEST_FORMAT,
        "checkpoint": str(checkpoint),
        "checkpoint_sha256": sha256_file(checkpoint),
        "onnx_sha256": sha256_bytes(data),
        "form": meta["form"],
        "policy": meta["policy"],
        "skip_rates_source": skip_source if skip_rates is not None else None,
        "opset": opset,
        "batch": batch,
        "backbone": model.backbone,
        "mode": model.mode,
        "num_if": if_count(graph),
        "blocks": blocks,
        "input": {"name": "input", "shape": [batch, *meta["input_size"]], "layout": meta["input_layout"],
                  "normalization": meta["normalization"]},
        "outputs": {"logits": [batch, model.num_classes], "gates": [batch, len(blocks)]},
        "card": card_of(meta),
    }


__all__ = [
    "DEFAULT_OPSET",
    "FORMS",
    "PAPER_CONDITIONAL",
    "POLICIES",
    "assert_clean",
    "block_node_names",
    "build_flat_graph",
    "compact",
    "conditionalize",
    "export_checkpoint",
    "graph_problems",
    "is_toolkit_onnx",
    "load_skip_rates",
    "load_toolkit_onnx",
    "manifest_skip_rates",
    "mask",
    "matching_manifest",
    "optimize_flat",
    "read_onnx",
    "resolve_policy",
]
