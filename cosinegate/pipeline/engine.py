"""Engines built here with Polygraphy: each with its manifest and its parity against the PyTorch reference, and
the selection among candidate engines timed with TensorRT."""

from dataclasses import replace
from pathlib import Path

from cosinegate.manifests import EngineManifest


def build_here(s, target, art, log=print):
    """Build the one engine ``s`` asks for; (engine, parity passed or None without a reference)."""
    engine, report = build_one(s, target, art, s.select if s.select in ("pruned", "dense") else s.form, log)
    return engine, None if report is None else bool(report["passed"])


def select_engines(s, target, art, log=print):
    """Build and check every candidate engine, time each with the bench's TensorRT backend on the reference
    images, keep the fastest within the profile's accuracy tolerance; (chosen engine, its parity passed)."""
    from cosinegate.artifacts import atomic_write_json
    from cosinegate.bench.backends import TrtBackend
    from cosinegate.bench.candidates import compare_candidates, max_accuracy_drop, selection_lines
    from cosinegate.parity import PROFILES
    from cosinegate.pipeline.stages import reference_images
    from cosinegate.trt.manifest import read_engine_manifest, write_engine_manifest

    engines, extra = {}, {}
    for name, paths in art.candidates.items():
        engine, report = build_one(s, target, replace(art, **paths), name, log)
        engines[name] = engine
        extra[name] = {"engine": engine.name, "onnx": str(paths["onnx"]), "num_if": onnx_if_count(paths["onnx"]),
                       "parity_passed": bool(report and report["passed"])}
    batches, labels = reference_images(art.data_choice, s.select_images, s.checkpoint)
    record = compare_candidates({n: TrtBackend(e) for n, e in engines.items()}, batches, labels,
                                max_accuracy_drop(PROFILES[s.precision]), extra=extra, clock="gpu", log=log)
    record.update(backend="trt")
    log("\n".join(selection_lines(record)))
    chosen = engines[record["chosen"]]
    write_engine_manifest(chosen, replace(read_engine_manifest(chosen), selection=record))
    atomic_write_json(target.out / f"{art.name}-selection.json", record)
    log(f"deploy {chosen} (selection in {chosen}.json and {target.out / (art.name + '-selection.json')})")
    return chosen, extra[record["chosen"]]["parity_passed"]


def build_one(s, target, art, label, log=print):
    """Build one engine (``label`` names it: the form or the candidate), its manifest and its parity report;
    (engine, report or None without a reference)."""
    from cosinegate.artifacts import atomic_path, atomic_write_json, sha256_file
    from cosinegate.graphmeta import card_of
    from cosinegate.trt.build import build_engine
    from cosinegate.trt.device_script import dla_tag
    from cosinegate.trt.manifest import write_engine_manifest
    from cosinegate.trt.targets import compute_capability_text

    version, cc = target.host.trt_version, compute_capability_text(target.host.compute_capability)
    settings = trt_settings(s, target.profile, version, art)
    target.out.mkdir(parents=True, exist_ok=True)
    engine = target.out / f"{art.name}-{label}-{s.precision}{dla_tag(s.dla_core)}-trt{version}-sm{cc.replace('.', '')}.engine"
    with atomic_path(engine) as tmp:
        seconds = build_engine(art.onnx, tmp, settings)
    meta = onnx_meta(art.onnx)
    write_engine_manifest(engine, EngineManifest(
        model=art.name, target=target.profile.name, trt_version=str(version), compute_capability=cc,
        precision=s.precision, batch=s.batch, form=s.form, build_seconds=round(seconds, 2),
        settings=settings.to_json(), inputs={"onnx": str(art.onnx), "onnx_sha256": sha256_file(art.onnx)},
        calibration_sha256=sha256_file(settings.calib_cache) if settings.calib_cache else None,  # the cache it read
        gate_thresholds={b: "logit > 0" for b in range(len(meta.get("blocks", [])))}, onnx_metadata=meta,
        card=card_of(meta), reference_inputs=str(Path(art.inputs).resolve()) if art.inputs else None,
        preprocessing=meta.get("preprocessing"), power_rails=target.profile.power_rails,
    ))
    log(f"built {engine} in {seconds:.1f}s (TensorRT {version}, sm{cc}); manifest {engine}.json")
    if not art.reference:
        return engine, None
    report = engine_parity(engine, art.inputs, art.reference, s.precision, dla_core=settings.dla_core)
    atomic_write_json(f"{engine}.parity.json", report)
    log(f"parity vs PyTorch reference: {'passed' if report['passed'] else 'FAILED'} -> {engine}.parity.json")
    return engine, report


def trt_settings(s, profile, version, art):
    """The Polygraphy build settings of this engine (cosinegate.trt.build.BuildSettings)."""
    from cosinegate.trt.build import build_settings, gate_layer_names

    return build_settings(profile, version, s.precision, s.int8_path, art.cache, s.dla_core, s.workspace,
                          s.timing_cache, gate_layer_names(art.onnx), form=s.form)


def onnx_opset(model, default=None):
    """The default-domain opset a model imports."""
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=default)


def onnx_meta(path):
    """The toolkit metadata of the graph at ``path``."""
    import onnx

    from cosinegate.graphmeta import get_metadata

    return get_metadata(onnx.load(str(path), load_external_data=False))


def onnx_if_count(path):
    """The number of If nodes of the graph at ``path`` (the selection table's If column)."""
    import onnx

    from cosinegate.graphmeta import if_count

    return if_count(onnx.load(str(path), load_external_data=False))


def engine_parity(engine, inputs_json, reference_json, precision, dla_core=None):
    """The TensorRT runner on the saved inputs (.npz or Polygraphy JSON) vs the saved PyTorch outputs, under the
    precision's profile (``dla_core``: the DLA core the engine was built for)."""
    from cosinegate.parity.compare import saved_feeds
    from cosinegate.runtime.tensorrt_backend import TensorRTRunner

    return saved_parity(TensorRTRunner(Path(engine), dla_core=dla_core).polygraphy(), saved_feeds(inputs_json), reference_json, precision)


def saved_parity(runner, feeds, reference_json, precision):
    """A Polygraphy runner on feed dicts vs the saved PyTorch outputs, under the precision's profile."""
    from polygraphy.comparator import Comparator, RunResults

    from cosinegate.parity import PROFILES, agreement_report
    from cosinegate.parity.compare import polygraphy_json, stack_iterations

    reference = RunResults.from_json(polygraphy_json(reference_json, "reference outputs")[0])
    results = Comparator.run([runner], data_loader=feeds)
    return {"precision": precision, **agreement_report(stack_iterations(reference[0][1]), stack_iterations(results[0][1]),
                                                       PROFILES[precision])}
