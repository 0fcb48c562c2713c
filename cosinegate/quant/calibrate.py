"""INT8 calibration of a CosineGate checkpoint: one set of ranges, two TensorRT worlds.

Flow (all on the CPU with ONNX Runtime):

1. calibration set: class-stratified sample of the training split (`calibset`);
2. ranges on the flat twin (every block runs, so every branch tensor gets a range):
   the wanted intermediate tensors become extra graph outputs of a copy, batches
   run through ONNX Runtime, `RangeCollector` turns them into amax (two passes
   for entropy/percentile, so batch size and order do not matter);
3. explicit quantization of the flat twin (`quantize_flat`): per-channel weight
   Q/DQ (axis 0) and per-tensor activation Q/DQ in front of every Conv/Gemm
   outside the gate heads, and on the shortcut ("residual" in TensorRT's Q/DQ
   placement guide) input of each block add; the gate heads (pooling,
   controller, comparison) stay FP32, and a tensor that also feeds a gate head
   keeps its FP32 reader there. Then conditionalize LAST, so each dynamic block's
   Q/DQ nodes end up inside its `If` then-branch;
4. a TensorRT calibration cache with the same amax values, keyed to the flat
   twin's tensor names (TensorRT's ONNX parser names ITensors after them); gate
   head tensors get no scale, so TensorRT keeps those layers in high precision;
5. a manifest; every file is written only after all of them were built and checked.
"""

import contextlib
import math
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cosinegate.artifacts import publish_dir, sha256_bytes, sha256_file, staging_dir, write_error
from cosinegate.errors import CosineGateError
from cosinegate.layernames import check_compact_releases, check_layer_names
from cosinegate.onnx import PAPER_CONDITIONAL, assert_clean, build_flat_graph, compact, conditionalize, mask, optimize_flat
from cosinegate.onnx.card import model_card
from cosinegate.onnx.export import set_metadata
from cosinegate.onnx.passes import infer_shapes
from cosinegate.quant import cache as cache_mod
from cosinegate.quant.calibset import batches, check_image_array
from cosinegate.quant.names import CACHE_NAME, DEFAULT_FORMS, DEFAULT_TRT, FILE_BY_FORM, FORMS, MANIFEST_FORMAT, MANIFEST_NAME
from cosinegate.progress import bar
from cosinegate.quant.ranges import METHODS, RangeCollector
from cosinegate.trtversion import SHORT_RELEASES



def resolve_trt_version(text):
    """'8.5' -> '8.5.2', '10.3' -> '10.3.0'; a full MAJOR.MINOR.PATCH[.BUILD] passes through (validated)."""
    full = SHORT_RELEASES.get(str(text).strip(), str(text).strip())
    cache_mod.parse_version(full)
    return full


def check_method(method):
    if method not in METHODS:
        raise CosineGateError(f"unknown calibration method {method!r}; use one of: {', '.join(METHODS)}.")
    return method


def is_gate_node(name):
    """Gate head nodes (pooling, controller, comparison) and the gates output stay FP32."""
    return "/gate/" in name or name.startswith("gates/")


def _is_block_add(node):
    parts = node.name.split("/")
    return node.op_type == "Add" and len(parts) == 2 and parts[0].startswith("block") and parts[1] == "add"


def quantization_points(flat_model):
    """[(tensor, consumer node, role)] where activation Q/DQ goes: Conv/Gemm inputs outside gate heads
    ('input') and the shortcut input of each block add ('shortcut')."""
    points = []
    for node in flat_model.graph.node:
        if node.op_type in ("Conv", "Gemm") and not is_gate_node(node.name):
            points.append((node.input[0], node.name, "input"))
        elif _is_block_add(node):
            points.append((node.input[0], node.name, "shortcut"))
    return points


def quantized_tensors(flat_model):
    """Activation tensor names that get a Q/DQ (sorted, unique)."""
    return sorted({tensor for tensor, _, _ in quantization_points(flat_model)})


def cache_tensors(flat_model):
    """Float activation tensors outside gate heads: the network input and every such node output."""
    graph = flat_model.graph
    float_type = 1  # TensorProto.FLOAT
    types = {v.name: v.type.tensor_type.elem_type for v in list(graph.value_info) + list(graph.output) + list(graph.input)}
    names = [i.name for i in graph.input]
    for node in graph.node:
        if is_gate_node(node.name):
            continue
        names += [o for o in node.output if o and types.get(o) == float_type and not is_gate_node(o)]
    return sorted(set(names))


def flat_twin(model, batch):
    """The optimized flat twin at a static batch (names do not depend on the batch)."""
    return optimize_flat(build_flat_graph(model, batch))


def _with_outputs(flat_model, tensors):
    import copy

    out = copy.deepcopy(flat_model)
    graph = out.graph
    known = {v.name: v for v in graph.value_info}
    present = {o.name for o in graph.output} | {i.name for i in graph.input}
    for name in tensors:
        if name in present:
            continue
        if name not in known:
            raise CosineGateError(f"tensor {name!r} is not in the flat twin; check the tensor name against the model.")
        graph.output.append(known[name])
    return out


def onnxrt_runner(model_proto, threads=None):
    """The runtime's ONNX Runtime runner of ``model_proto``, active (errors-only logging)."""
    from cosinegate.runtime.onnxruntime_backend import OnnxRuntimeRunner

    return OnnxRuntimeRunner(model_proto, threads=threads, log_severity=3).activate()


def collect_ranges(model, images, method="entropy", batch_size=32, percentile=99.99, num_bins=2048, tensors=None, order=None,
                   log=None):
    """{tensor: amax} over uint8 `images` from the flat twin of `model`, run with ONNX Runtime.

    `tensors` defaults to `cache_tensors` (which includes the Q/DQ points);
    `order` optionally permutes the images (the result must not depend on it);
    `log`: the caller's, for the progress bar over the images (cosinegate.progress).
    """
    check_method(method)
    images = check_image_array(images, size=model.image_size)
    if order is not None:
        images = images[np.asarray(order)]
    collector = RangeCollector(method, num_bins, percentile)
    runners = {}

    passes = 2 if collector.needs_histograms else 1

    def run_pass(number):
        shown = bar(log, total=len(images), desc=f"calibration pass {number}/{passes}", unit="img")
        for batch in batches(images, batch_size, model.normalization):
            n = len(batch)
            if n not in runners:
                flat = flat_twin(model, n)
                wanted = tensors if tensors is not None else cache_tensors(flat)
                runners[n] = (onnxrt_runner(_with_outputs(flat, wanted)), [w for w in wanted if w != "input"], "input" in wanted)
            runner, names, with_input = runners[n]
            outputs = runner.infer({"input": batch})
            values = [outputs[name] for name in names]
            if with_input:
                collector.update("input", batch)
            for name, value in zip(names, values):
                collector.update(name, value)
            shown.update(n)
        shown.close()

    run_pass(1)
    if collector.needs_histograms:
        collector.start_histograms()
        run_pass(2)
    return collector.amax()


def quantize_flat(flat_model, amax):
    """Explicit Q/DQ copy of a flat twin (an onnx.ModelProto); metadata and IR version kept."""
    import onnx_graphsurgeon as gs

    from cosinegate.quant.qdq import insert_activation_qdq, insert_weight_qdq

    points = quantization_points(flat_model)
    missing = sorted({t for t, _, _ in points if t not in amax})
    if missing:
        raise CosineGateError(f"no amax for quantized tensor(s) {missing}; recalibrate (or pass a cache made for this model).")
    graph = gs.import_onnx(flat_model)
    by_name = {node.name: node for node in graph.nodes}
    for tensor, consumer, role in points:
        node = by_name[consumer]
        source = next(t for t in node.inputs if t.name == tensor)
        insert_activation_qdq(graph, source, float(amax[tensor]), f"{consumer}/{role}_q", consumers=[node])
        if role == "input":
            insert_weight_qdq(graph, node, f"{consumer}/weight_q")
    out = gs.export_onnx(graph)
    out.ir_version = flat_model.ir_version
    out.producer_name = flat_model.producer_name
    out.metadata_props.extend(flat_model.metadata_props)
    return infer_shapes(out)


def amax_from_cache(path, trt_version, method):
    """Validate an existing cache against the target (version and algorithm) and return its amax."""
    trt_version = resolve_trt_version(trt_version)
    algorithm = cache_mod.algorithm_for(check_method(method), trt_version)
    scales = cache_mod.check_cache(path, trt_version, algorithm)
    return {name: float(np.float32(scale) * np.float32(cache_mod._INT8_MAX)) for name, scale in scales.items()}


@dataclass
class Calibration:
    """Everything `write_outputs` writes, built in memory first."""

    files: dict = field(default_factory=dict)  # name -> bytes
    manifest: dict = field(default_factory=dict)


def check_forms(forms, mode):
    forms = tuple(forms)
    unknown = [f for f in forms if f not in FORMS]
    if unknown or not forms:
        raise CosineGateError(f"unknown Q/DQ form(s) {unknown or forms}; choose from {', '.join(FORMS)}.")
    for skipping in ("conditional", "compact"):
        if mode == "paper" and skipping in forms:
            raise CosineGateError(
                f"{PAPER_CONDITIONAL.rstrip('.').replace('`conditional`', f'`{skipping}`')}; so no {skipping} Q/DQ graph "
                "either: pass --forms flat,masked."
            )
    return forms


def calibrate(checkpoint, calib_set=None, method="entropy", batch_size=32, percentile=99.99, trt_version=DEFAULT_TRT,
              forms=DEFAULT_FORMS, policy="auto", skip_rates=None, cache_in=None, num_bins=2048, log=None):
    """Build the Q/DQ graphs, cache and manifest in memory (nothing written); return a Calibration."""
    from cosinegate.training.checkpoint import model_from_checkpoint

    check_method(method)
    trt_full = resolve_trt_version(trt_version)
    if "compact" in forms:
        check_compact_releases([trt_full], f"--forms compact for TensorRT {trt_full}")
    algorithm = cache_mod.algorithm_for(method, trt_full)
    model, state = model_from_checkpoint(checkpoint)
    forms = check_forms(forms, model.mode)
    skip_rates = skip_rates if skip_rates is not None else state.get("skip_rates")
    flat = flat_twin(model, 1)
    if cache_in is not None:
        amax = amax_from_cache(cache_in, trt_full, method)
        source = {"kind": "cache", "path": str(cache_in), "sha256": sha256_file(cache_in)}
    else:
        if calib_set is None:
            raise CosineGateError("no calibration set and no --cache-in; pass calibration data or an existing cache.")
        if len(calib_set) < model.num_classes:
            raise CosineGateError(
                f"{len(calib_set)} calibration images are fewer than the {model.num_classes} classes; use at least {model.num_classes}."
            )
        amax = collect_ranges(model, calib_set.images, method, batch_size, percentile, num_bins, log=log)
        source = {
            "kind": "images", "data": calib_set.source, "data_root": calib_set.root, "split": "train",
            "seed": calib_set.seed, "num_images": len(calib_set), "ids_sha256": calib_set.ids_sha256, "ids": list(calib_set.ids),
        }
    qdq_flat = quantize_flat(flat, amax)
    graphs = {}
    if "flat" in forms:
        graphs["flat"] = qdq_flat
    if "conditional" in forms:
        graphs["conditional"] = conditionalize(qdq_flat, policy, skip_rates)
    if "masked" in forms:
        graphs["masked"] = mask(qdq_flat, policy, skip_rates)
    if "compact" in forms:
        graphs["compact"] = compact(qdq_flat, policy, skip_rates)
    result = Calibration()
    onnx_hashes = {}
    card = model_card(checkpoint, state, model)
    for form, graph in graphs.items():
        set_metadata(graph, **card)
        assert_clean(graph)
        check_layer_names(graph, f"the {form} Q/DQ graph of {checkpoint}")
        data = graph.SerializeToString()
        result.files[FILE_BY_FORM[form]] = data
        onnx_hashes[FILE_BY_FORM[form]] = sha256_bytes(data)
    cache_amax = {name: amax[name] for name in sorted(amax) if math.isfinite(amax[name]) and amax[name] > 0}
    header = cache_mod.format_header(trt_full, algorithm)
    result.files[CACHE_NAME] = _cache_text(cache_amax, header).encode("utf-8")
    result.manifest = {
        "format": MANIFEST_FORMAT,
        "method": method,
        "percentile": percentile if method == "percentile" else None,
        "num_images": source.get("num_images"),
        "ids_sha256": source.get("ids_sha256"),
        "calibration": source,
        "batch_size": batch_size,
        "checkpoint": str(checkpoint),
        "checkpoint_sha256": sha256_file(checkpoint),
        "onnx_sha256": onnx_hashes,
        "cache": {"file": CACHE_NAME, "header": header, "algorithm": algorithm, "sha256": sha256_bytes(result.files[CACHE_NAME])},
        "trt_version": trt_full,
        "policy": policy,
        "mode": model.mode,
        "quantized_tensors": quantized_tensors(flat),
        "amax": {name: float(value) for name, value in sorted(amax.items())},
        "card": card,
    }
    return result


def _cache_text(amax, header):
    """Cache text through cache.write_cache (its checks) into a temporary file."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / CACHE_NAME
        cache_mod.write_cache(path, amax, header)
        return path.read_text()


def write_outputs(calibration, out):
    """Build the whole output folder beside `out`, then swap it in at once (`publish_dir`).

    A kill at any point leaves `out` as it was or complete: never new graphs beside an old cache
    or manifest. `out` may hold calibration outputs only (and stage records), since it is replaced whole.
    """
    import json

    out = Path(out)
    ours = set(FILE_BY_FORM.values()) | {CACHE_NAME, MANIFEST_NAME}
    if out.is_dir():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in ours and not p.name.endswith(".stage.json"))
        if foreign:
            raise CosineGateError(f"--out {out} holds other files ({', '.join(foreign[:3])}), and calibration replaces its "
                                  "folder whole; pass a new folder or an earlier calibration --out.")
    elif out.exists():
        raise CosineGateError(f"--out {out} is a file; calibration writes a folder: pass a folder path.")
    staging = staging_dir(out)
    try:
        files = dict(calibration.files)
        files[MANIFEST_NAME] = (json.dumps(calibration.manifest, indent=2, sort_keys=True) + "\n").encode("utf-8")
        try:
            for name, data in files.items():
                (staging / name).write_bytes(data)
            publish_dir(staging, out)
        except OSError as exc:
            raise write_error(out, exc) from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(staging)
    return sorted(files)
