"""``deploy(settings)``: checkpoint (or graph) -> ONNX forms -> calibration -> reference -> selection -> engine
here, or the device bundle where this host cannot build for the target; from a bundle on the device, its engine."""

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from cosinegate.errors import CosineGateError
from cosinegate.pipeline.plan import Artifacts, resolve


@dataclass
class DeployResult:
    """What a deploy made: an engine (and whether its parity passed), or a bundle and its manifest."""

    passed: bool = True  # False: the engine's parity against the PyTorch reference failed
    engine: Optional[Path] = None
    bundle: Optional[Path] = None
    archive: Optional[Path] = None
    manifest: object = None  # the bundle's BundleManifest (cpu-onnxruntime: the chosen graph's OrtEngineManifest)


def deploy(settings, log=print):
    """Run the deploy ``settings`` (a DeploySettings) asks for; a DeployResult. Nothing is left half-written:
    an output folder this run made is removed when it fails."""
    from cosinegate.artifacts import folder_lock, write_error
    from cosinegate.trt.targets import check_opset

    from cosinegate.trt.targets import target_runtime

    if target_runtime(settings.target) == "onnxruntime":  # built here, for this CPU (cosinegate.pipeline.ort_target)
        from cosinegate.pipeline.ort_target import deploy_ort

        engine, passed, manifest = deploy_ort(settings, log)
        return DeployResult(bool(passed), engine, manifest=manifest)
    s, target = resolve(settings, log)
    if s.bundle:
        from cosinegate.pipeline.board import from_bundle

        engine, passed = from_bundle(s, target, log)
        return DeployResult(passed is not False, engine)
    opset = s.opset
    if opset is None:
        from cosinegate.onnx import DEFAULT_OPSET

        opset = DEFAULT_OPSET
    check_opset(target.profile, opset, target.host.trt_version if target.can_build else None)
    out = target.out
    created = next((p for p in reversed([out, *out.parents]) if not p.exists()), None)  # the topmost folder made here
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(out, exc) from exc
    try:
        with folder_lock(out, "build-engine"):  # stages, bundle and engine of two runs would mix
            if not target.can_build:
                from cosinegate.pipeline.bundle import bundle_name
                from cosinegate.pipeline.stages import model_name

                refuse_overwrite(out / f"{bundle_name(model_name(s.checkpoint or s.onnx), s)}-bundle", s)
            art = prepare(s, target, opset, log)
            if target.can_build:
                from cosinegate.pipeline.engine import build_here, select_engines

                engine, passed = (select_engines if s.select == "fastest" else build_here)(s, target, art, log)
                result = DeployResult(passed is not False, engine)
            else:
                from cosinegate.pipeline.bundle import write_bundle

                final, archive, manifest = write_bundle(s, target, art, log)
                result = DeployResult(True, bundle=final, archive=archive, manifest=manifest)
            if result.passed:
                from cosinegate.pipeline.stages import finish_work

                finish_work(target.out, s.clean_work, art.name, log)
            if result.manifest is not None:  # build-engine's last line: without --require-int8-pass it still exits 0
                from cosinegate.trt.bundle_readme import preview_failure

                failed = preview_failure(getattr(result.manifest, "int8_preview_onnxrt", None))
                if failed:
                    log(failed)
        return result
    except BaseException as exc:
        if created:  # a folder this run made (with any parents it made) holds only what it left half-done
            shutil.rmtree(created, ignore_errors=True)
        from cosinegate.pipeline.int8_check import Int8CheckFailed

        if isinstance(exc, Int8CheckFailed) and not target.can_build:
            older = stale_bundle(out, s)
            if older:
                raise Int8CheckFailed(f"{exc} The bundle at {older} is from an earlier build, not this one: delete it "
                                      "before copying anything to the board.") from None
        raise


def stale_bundle(out, s):
    """The bundle (folder or archive) an earlier build of this model left in ``out``, or None."""
    from cosinegate.pipeline.bundle import bundle_name
    from cosinegate.pipeline.stages import model_name

    name = bundle_name(model_name(s.checkpoint or s.onnx), s)
    return next((p for p in (out / f"{name}-bundle", out / f"{name}-bundle.tar.gz") if p.exists()), None)


def prepare(s, target, opset, log=print):
    """Run or reuse the stages; the Artifacts of the build."""
    import onnx

    from cosinegate.onnx import read_onnx
    from cosinegate.pipeline.engine import onnx_opset
    from cosinegate.pipeline.stages import Stages, calibration_files, decision_counts, model_name, work_folder
    from cosinegate.trt.targets import check_opset
    from cosinegate.layernames import check_layer_names

    profile = target.profile
    if s.checkpoint:
        from cosinegate.data.choice import DataOrigin, choose_data
        from cosinegate.graphmeta import block_kinds
        from cosinegate.onnx.export import get_metadata
        from cosinegate.training.checkpoint import check_image_size, load_checkpoint

        state = load_checkpoint(s.checkpoint)
        check_image_size(s.image_size, state, s.checkpoint)
        data = choose_data(DataOrigin.of_checkpoint(state), s.data, s.data_root, log=log)
        name = model_name(s.checkpoint)
        stages = Stages(work_folder(target.out, name), log)
        graph = stages.export(s.checkpoint, s.form, s.batch, opset, if_cost_table=s.if_cost_table)
        art = Artifacts(name, graph, forms={s.form: graph, "flat": stages.export(s.checkpoint, "flat", s.batch, opset)},
                        data=data.record(), data_choice=data)
        art.reference, art.inputs, ref_report = stages.reference(s.checkpoint, art.onnx, data)
        kinds = block_kinds(get_metadata(onnx.load(str(art.onnx), load_external_data=False)))
        art.reference_decisions = decision_counts(ref_report, kinds)
        if art.reference_decisions["dynamic_blocks_seen_one_way"]:
            log(f"note: the {ref_report['num_samples']} reference images see dynamic block(s) "
                f"{art.reference_decisions['dynamic_blocks_seen_one_way']} decide only one way")
        if s.select != "conditional":
            from cosinegate.pipeline.stages import candidate_graphs

            names = ("pruned", "dense") if s.select == "fastest" else (s.select,)
            art.candidates = candidate_graphs(stages, s.checkpoint, opset, names, data)
            art.candidates["conditional"] = {"onnx": art.onnx, "reference": art.reference, "inputs": art.inputs}
            if s.select != "fastest":  # forced: that candidate is the build graph
                chosen = art.candidates[s.select]
                art.onnx, art.reference, art.inputs = chosen["onnx"], chosen["reference"], chosen["inputs"]
    else:
        from cosinegate.onnx import load_toolkit_onnx

        model = check_layer_names(load_toolkit_onnx(s.onnx), s.onnx)
        check_opset(profile, onnx_opset(model, default=opset))
        art = Artifacts(model_name(s.onnx), Path(s.onnx), forms={s.form: Path(s.onnx)})
        stages = None
    if s.precision == "int8":
        calib_dir = s.calibration
        if calib_dir is None and s.calib_cache is None:
            from cosinegate.pipeline.calibration import find_calibration

            calib_dir = find_calibration(s.checkpoint, data, s.form, log) or stages.calibrate(s.checkpoint, data, s.form)
        if calib_dir:
            qdq, cache = calibration_files(calib_dir, s.form, s.checkpoint)
            art.calibration, art.cache = str(calib_dir), cache
            if s.int8_path == "qdq":
                if qdq is None:
                    raise CosineGateError(f"--int8 qdq --form {s.form} needs the {s.form} Q/DQ graph in {calib_dir}; "
                                          f"rerun cosinegate calibrate --forms flat,{s.form}, or use --int8 cache.")
                check_layer_names(read_onnx(qdq), qdq)
                art.qdq = art.onnx = qdq
            if s.int8_path == "qdq" or not s.calib_cache:  # the shipped cache is this folder's: same amax values
                art.qdq_twin = qdq  # as a graph ONNX Runtime runs: a forecast of the engine
        if s.calib_cache:
            art.cache = Path(s.calib_cache)
        if s.int8_path == "cache" and art.cache is None:
            raise CosineGateError("--int8 cache needs a calibration cache and none was found; pass --calib-cache FILE.")
        if s.int8_path == "cache":
            check_cache_covers(art.cache, art.onnx)
        check_opset(profile, onnx_opset(onnx.load(str(art.onnx), load_external_data=False)))
    return art


def check_cache_covers(cache, graph_path):
    """A calibration cache must hold a scale for every tensor the graph quantizes (the check calibrate --cache-in
    makes): a cache made for another model is refused instead of leaving those tensors without a range."""
    import onnx

    from cosinegate.quant.cache import parse_cache
    from cosinegate.quant.calibrate import quantized_tensors

    _, scales = parse_cache(cache)
    missing = [t for t in quantized_tensors(onnx.load(str(graph_path), load_external_data=False)) if t not in scales]
    if missing:
        raise CosineGateError(f"calibration cache {cache} has no scale for {len(missing)} tensor(s) of {graph_path} "
                              f"({', '.join(missing[:3])}...): it was made for another model; recalibrate this one "
                              "(cosinegate calibrate) or pass its cache.")


def refuse_overwrite(final, s):
    """A bundle folder made from another model is not replaced unless ``s.force``."""
    from cosinegate.artifacts import read_json, sha256_file

    manifest = final / "manifest.json"
    if s.force or not manifest.is_file():
        return
    made_from = read_json(manifest, "bundle manifest").get("source_sha256")
    if made_from != sha256_file(s.checkpoint or s.onnx):
        raise CosineGateError(f"{final} holds a bundle of another model (sha256 {str(made_from)[:16]}...); "
                              "pass --out DIR for a separate folder, or --force to replace it.")
