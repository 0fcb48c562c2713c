"""The cpu-onnxruntime target: the engine is built on the machine it runs on, as on a board.

From a checkpoint (default: the embedded model) it exports the flat twin and the selection candidates (work cache
OUT/.work/<model>, reused by input hash, as the TensorRT path), makes the PyTorch reference, then builds each
candidate as ONNX Runtime runs it here: the conditional one as the ORT-native conditional graph
(cosinegate.onnx.ort_native; NCHWc only on x86), pruned and dense optimized offline the same way. Each graph is
written as OUT/<model>-<candidate>-fp32-ort<version>-<machine>.onnx with a manifest beside it
(cosinegate.manifests.OrtEngineManifest: ONNX Runtime version, CPU, layout, hashes) and checked against the
PyTorch reference (fp32: gates exact). The selection times them in turns on ONNX Runtime and applies the rule
the TensorRT path applies (cosinegate.bench.candidates.compare_candidates); it is recorded in the chosen
graph's manifest and OUT/<model>-selection.json. Loading such a graph elsewhere is refused
(cosinegate.runtime.ort_engine.check_ort_engine).
"""

import platform
import re
import shutil
import time
from dataclasses import replace

from cosinegate.errors import CosineGateError

NCHWC_MACHINES = ("x86_64", "amd64", "i386", "i686", "x86")
# settings of the TensorRT path this target has no use for: {field: the flag to drop}
_UNUSED = {"bundle": "--bundle", "onnx": "--onnx (pass --checkpoint: the flat twin and the reference come from it)",
           "int8_path": "--int8", "calib_cache": "--calib-cache", "calibration": "--calibration", "dla_core": "--dla-core",
           "workspace": "--workspace", "timing_cache": "--timing-cache", "require_int8_pass": "--require-int8-pass",
           "if_cost_table": "--if-cost-table"}


def nchwc_here(machine=None):
    """Whether ONNX Runtime here has NCHWc kernels (x86 builds only; ARM builds have none)."""
    return (machine or platform.machine()).lower() in NCHWC_MACHINES


def check_settings(s, profile):
    """Refuse, in one line, what the cpu-onnxruntime target does not build; the settings with defaults filled in."""
    for name, flag in _UNUSED.items():
        value = getattr(s, name)
        if value is not None and value is not False:  # given at all: --dla-core 0 too (0 == False)
            raise CosineGateError(f"target {profile.name} builds the fp32 ONNX Runtime graph here from a checkpoint; "
                                  f"drop {flag}.")
    precision = s.precision or "fp32"
    if precision not in profile.precisions:
        raise CosineGateError(f"precision {precision} is not offered by {profile.name}; use {', '.join(profile.precisions)}.")
    if s.form != "conditional" or s.batch != 1:
        raise CosineGateError(f"target {profile.name} builds the ORT-native conditional graph at batch 1; "
                              "drop --form/--batch (use --select dense for a graph without If).")
    if s.select_images < 1:
        raise CosineGateError("--select-images must be at least 1.")
    return replace(s, precision=precision, select=s.select or "fastest")


def engine_name(model, candidate, version, machine):
    """<model>-<candidate>-fp32-ort<version>-<machine>.onnx, the version and machine reduced to plain characters."""
    version, machine = (re.sub(r"[^A-Za-z0-9._]", "_", str(part)) for part in (version, machine))
    return f"{model}-{candidate}-fp32-ort{version}-{machine}.onnx"


def deploy_ort(settings, log=print):
    """Build, check and select the cpu-onnxruntime graphs ``settings`` (a DeploySettings) asks for;
    (chosen graph, parity passed, its OrtEngineManifest). An output folder this run made is removed when it fails."""
    from cosinegate.artifacts import check_checkpoint_file, folder_lock, write_error
    from cosinegate.pipeline.plan import output_folder
    from cosinegate.trt.targets import load_ort_target

    profile = load_ort_target(settings.target)
    s = check_settings(settings, profile)
    out, where = output_folder(s, profile.name)
    if not s.checkpoint:
        from cosinegate.defaults import default_checkpoint

        s = replace(s, checkpoint=str(default_checkpoint(log)))
    check_checkpoint_file(s.checkpoint)
    log(f"output: {out} ({where})")
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(out, exc) from exc
    try:
        with folder_lock(out, "build-engine"):
            return _build(s, profile, out, log)
    except BaseException:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise


def _build(s, profile, out, log):
    import onnx

    from cosinegate.artifacts import atomic_write_json
    from cosinegate.data.choice import DataOrigin, choose_data
    from cosinegate.bench.candidates import CANDIDATES
    from cosinegate.onnx import DEFAULT_OPSET
    from cosinegate.pipeline.stages import Stages, candidate_graphs, finish_work, model_name, work_folder
    from cosinegate.training.checkpoint import check_image_size, load_checkpoint

    state = load_checkpoint(s.checkpoint)
    check_image_size(s.image_size, state, s.checkpoint)
    data = choose_data(DataOrigin.of_checkpoint(state), s.data, s.data_root, log=log)
    name = model_name(s.checkpoint)
    opset = s.opset or DEFAULT_OPSET
    stages = Stages(work_folder(out, name), log)
    flat = stages.export(s.checkpoint, "flat", 1, opset)
    names = CANDIDATES if s.select == "fastest" else (s.select,)
    candidates = candidate_graphs(stages, s.checkpoint, opset, names, data)
    flat_model = onnx.load(str(flat))
    built = {}
    for cand, paths in candidates.items():
        built[cand] = build_candidate(s, profile, out, name, cand, flat, flat_model, paths, state.get("skip_rates"), log)
    if s.select == "fastest":
        record = select(s, built, data, log)
        chosen = record["chosen"]
        from cosinegate.manifests import OrtEngineManifest
        from cosinegate.artifacts import read_json
        from cosinegate.runtime.ort_engine import manifest_path

        path = manifest_path(built[chosen]["engine"])
        manifest = OrtEngineManifest.from_json(read_json(path, "ONNX Runtime engine manifest"), path)
        atomic_write_json(path, replace(manifest, selection=record).to_json())
        atomic_write_json(out / f"{name}-selection.json", record)
        log(f"deploy {built[chosen]['engine']} (selection in {path} and {out / (name + '-selection.json')})")
    else:
        chosen = s.select
    passed = built[chosen]["parity"]["passed"]
    if passed:
        finish_work(out, s.clean_work, name, log)
    from cosinegate.runtime.ort_engine import read_ort_manifest

    return built[chosen]["engine"], passed, read_ort_manifest(built[chosen]["engine"])



def native_graph(cand, flat_model, candidate_onnx, skip_rates, nchwc):
    """The candidate as ONNX Runtime runs it on this machine: the ORT-native conditional graph, or the pruned/dense
    graph optimized offline (ORT_ENABLE_ALL) and marked as such (loaded later with optimizations off)."""
    import onnx
    import onnxruntime as ort

    from cosinegate.graphmeta import get_metadata, set_metadata
    from cosinegate.onnx.ort_native import ort_native_conditional, ort_optimize

    if cand == "conditional":
        return ort_native_conditional(flat_model, "auto", skip_rates, threads=1, nchwc=nchwc)
    source = onnx.load(str(candidate_onnx))
    meta = get_metadata(source)
    model = ort_optimize(source, 1, nchwc)
    set_metadata(model, **meta)
    layout = "nchwc" if any(n.domain == "com.microsoft.nchwc" for n in model.graph.node) else "nchw"
    set_metadata(model, runtime="onnxruntime-native", onnxruntime_version=ort.__version__, layout=layout)
    return model


def build_candidate(s, profile, out, name, cand, flat, flat_model, paths, skip_rates, log=print):
    """Build one candidate graph here, write it and its manifest, check its parity; {"engine", "parity", "layout"}."""
    import onnx

    from cosinegate.artifacts import atomic_path, atomic_write_json, sha256_file
    from cosinegate.graphmeta import get_metadata
    from cosinegate.manifests import OrtEngineManifest
    from cosinegate.runtime.ort_engine import cpu_identity, manifest_path, onnxruntime_version

    version, cpu, nchwc = onnxruntime_version(), cpu_identity(), nchwc_here()
    start = time.perf_counter()
    model = native_graph(cand, flat_model, paths["onnx"], skip_rates, nchwc)
    seconds = time.perf_counter() - start
    meta = get_metadata(model)
    engine = out / engine_name(name, cand, version, cpu["machine"])
    with atomic_path(engine) as tmp:
        onnx.save(model, str(tmp))
    parity = ort_parity(engine, paths["inputs"], paths["reference"])
    source = flat if cand == "conditional" else paths["onnx"]
    manifest = OrtEngineManifest(
        engine_sha256=sha256_file(engine), model=name, target=profile.name, candidate=cand, onnxruntime_version=version,
        cpu=cpu, layout=meta.get("layout"), precision="fp32", batch=1, form="conditional", build_seconds=round(seconds, 2),
        inputs={"checkpoint": str(s.checkpoint), "checkpoint_sha256": sha256_file(s.checkpoint), "onnx": str(source),
                "onnx_sha256": sha256_file(source)},
        onnx_metadata=meta, reference_inputs=str(paths["inputs"]),
        parity={"passed": bool(parity["passed"]), "summary": parity.get("summary")},
    )
    atomic_write_json(manifest_path(engine), manifest.to_json())
    atomic_write_json(f"{engine}.parity.json", parity)
    log(f"built {engine} in {seconds:.1f}s (ONNX Runtime {version}, {cpu['machine']} {cpu['model']}, "
        f"layout {meta.get('layout')}); parity vs PyTorch reference: {'passed' if parity['passed'] else 'FAILED'}")
    return {"engine": engine, "parity": parity, "layout": meta.get("layout")}


def ort_parity(engine, inputs, reference):
    """The fp32 parity (gates exact) of the built graph, loaded as a user would (manifest checks skipped: it is
    being written), on the saved reference images against PyTorch's saved outputs."""
    from cosinegate.parity.compare import saved_feeds
    from cosinegate.pipeline.engine import saved_parity
    from cosinegate.runtime.onnxruntime_backend import OnnxRuntimeRunner

    return saved_parity(OnnxRuntimeRunner(str(engine), threads=1).polygraphy(), saved_feeds(inputs), reference, "fp32")


def select(s, built, data, log=print):
    """Time every built graph in turns on ONNX Runtime (1 thread) on the reference images and apply the shared rule."""
    from cosinegate.bench.backends import OnnxrtBackend
    from cosinegate.bench.candidates import compare_candidates, max_accuracy_drop, selection_lines
    from cosinegate.bench.graphs import graph_info
    from cosinegate.parity import PROFILES
    from cosinegate.pipeline.stages import reference_images

    backends = {c: OnnxrtBackend(b["engine"], threads=1) for c, b in built.items()}
    extra = {c: {"engine": b["engine"].name, "layout": b["layout"], "num_if": graph_info(b["engine"]).num_if,
                 "parity_passed": bool(b["parity"]["passed"])} for c, b in built.items()}
    batches, labels = reference_images(data, s.select_images, s.checkpoint)
    record = compare_candidates(backends, batches, labels, max_accuracy_drop(PROFILES["fp32"]), extra=extra, log=log)
    record.update(backend="onnxrt", threads=1)
    log("\n".join(selection_lines(record)))
    return record
