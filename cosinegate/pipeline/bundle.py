"""The device bundle written where this host cannot build the target's engine: graphs, calibration, reference,
gate-pattern timing inputs, the selection made here, ``build_on_device.sh`` and the bundle manifest."""

from pathlib import Path

from cosinegate.errors import CosineGateError
from cosinegate.manifests import BundleManifest, EngineManifest

INPUTS = "inputs.npz"  # the reference images, uint8 (cosinegate.parity.device_check.INPUTS, read by check_parity.py)


def graph_label(s):
    """What names the bundle and its engine: a candidate selected on the desktop (--select pruned|dense), else the
    form."""
    return s.select if s.select in ("pruned", "dense") else s.form


def bundle_name(model, s):
    """Bundles of one model for other forms, precisions or DLA cores get their own folders."""
    from cosinegate.trt.device_script import dla_tag

    return f"{model}-{graph_label(s)}-{s.precision}{dla_tag(s.dla_core)}"


def write_bundle(s, target, art, log=print):
    """Write ``<out>/<model>-<form>-<precision>-bundle`` (+ .tar.gz); (folder, archive, BundleManifest)."""
    import json
    import shlex
    import tempfile

    import onnx

    from cosinegate.artifacts import sha256_file
    from cosinegate.graphmeta import block_kinds, card_of, get_metadata
    from cosinegate.onnx import matching_manifest
    from cosinegate.parity import device_check
    from cosinegate.parity.compare import saved_feeds
    from cosinegate.pipeline.engine import onnx_meta
    from cosinegate.pipeline.stages import parity_profile
    from cosinegate.quant.names import CACHE_NAME, MANIFEST_NAME
    from cosinegate.trt.build import cache_calibrator, gate_layer_names
    from cosinegate.trt.bundle import (PATTERNS, input_bin, make_bundle, release_cache_name,
                                       release_caches)
    from cosinegate.trt import run_engine
    from cosinegate.trt.bundle_readme import bundle_readme, preview_failure
    from cosinegate.trt.device_script import ScriptPlan, device_script

    profile, name = target.profile, art.name
    files, texts = {}, {}
    cache_builds = cache_releases(s, profile)  # the releases whose build reads a calibration cache
    qdq_only = s.precision == "int8" and bool(art.qdq) and not cache_builds  # no release builds the float graph
    for form in [] if qdq_only else board_forms(s, art):  # the graphs the board builds; the flat twin stays here
        path = art.forms[form]
        files[f"model.{form}.onnx"] = path
        if matching_manifest(path) is not None:  # a manifest naming another graph (a killed export) stays out
            files[f"model.{form}.onnx.json"] = Path(f"{path}.json")
    float_rel = build_rel = None if qdq_only else f"model.{s.form}.onnx"
    if art.calibration:
        for rel in (MANIFEST_NAME,) if qdq_only else (CACHE_NAME, MANIFEST_NAME):  # what calibrate wrote beside its
            extra = Path(art.calibration) / rel  # graphs (stages.calibration_files refused links and special files)
            if extra.is_file():
                files[f"calibration/{rel}"] = extra
        if art.qdq:  # and the Q/DQ graph built
            build_rel = f"calibration/{Path(art.qdq).name}"
            files[build_rel] = Path(art.qdq)
    calibrator, caches = None, {}
    if art.cache and cache_builds:
        calibrator = cache_calibrator(art.cache)
        for version, text in release_caches(art.cache, profile).items():
            if version in cache_builds:
                texts[release_cache_name(version)] = text
                caches[version] = release_cache_name(version)
    if not art.reference:
        raise CosineGateError("a bundle needs the PyTorch reference (reference.json, inputs.npz), made from --checkpoint; "
                              "pass --checkpoint instead of --onnx.")
    files["reference.json"] = art.reference
    files[INPUTS] = art.inputs  # the reference images once, at uint8; every candidate's reference is on them
    files["check_parity.py"] = Path(device_check.__file__)  # the check and the feeds' data loader: numpy + Polygraphy
    files["run_engine.py"] = Path(run_engine.__file__)  # images -> label, blocks run, MACs; TensorRT + numpy only
    texts["parity_profile.json"] = json.dumps(parity_profile(s.precision), indent=2) + "\n"
    card = card_of(onnx_meta(art.onnx))
    if card.get("classes"):
        texts["labels.txt"] = "".join(f"{c}\n" for c in card["classes"])
    candidates = {}
    for cand, paths in art.candidates.items():
        suffix = "" if cand == "conditional" else f".{cand}"
        if sha256_file(paths["inputs"]) != sha256_file(art.inputs):
            raise CosineGateError(f"the {cand} candidate's reference images differ from the bundle's {INPUTS}; remove the work "
                                  f"folder {Path(art.inputs).parent} and run again.")
        rels = {"onnx": f"model.{cand}.onnx", "reference": f"reference{suffix}.json", "inputs": INPUTS}
        for key, rel in rels.items():
            files.setdefault(rel, paths[key])
        candidates[cand] = dict(rels, kinds=block_kinds(onnx_meta(paths["onnx"])))
    check_rels = {"reference": "reference.json", "inputs": INPUTS}
    if s.select not in ("fastest", "conditional"):
        build_rel = float_rel = f"model.{s.select}.onnx"
        check_rels = {key: candidates[s.select][key] for key in check_rels}
    tmp = tempfile.TemporaryDirectory(prefix="cg-bundle.")
    try:
        files["input.bin"] = Path(tmp.name) / "input.bin"
        input_bin(saved_feeds(art.inputs), files["input.bin"])
        patterns, timing = None, None
        if s.form == "conditional" and s.select in ("fastest", "conditional"):
            pattern_files, texts[PATTERNS], timing = timing_patterns(s, art, tmp.name)
            files.update(pattern_files)
            patterns = PATTERNS
        build_path = files.get(build_rel, art.onnx)
        meta = get_metadata(onnx.load(str(build_path), load_external_data=False))
        note = int8_note(profile, s, calibrator)
        preview = int8_preview(s, art, log)
        failed_preview = preview_failure(preview)
        manifest = BundleManifest(
            model=name, target=profile.name, form=s.form, precision=s.precision, batch=s.batch,
            int8_path=s.int8_path if s.precision == "int8" else None, build_onnx=build_rel, float_onnx=float_rel,
            calibration_caches=caches or None, calibrator=calibrator, dla_core=s.dla_core, int8=note,
            source=str(s.checkpoint or s.onnx), source_sha256=sha256_file(s.checkpoint or s.onnx), data=art.data,
            reference=art.reference_decisions, card=card, parity_profile=parity_profile(s.precision),
            int8_preview_onnxrt=preview, timing=timing, preprocessing=card.get("preprocessing"))
        if candidates:
            manifest.candidates, manifest.selection = candidates, select_here(s, art, candidates, log)
        engine = EngineManifest(model=name, target=profile.name, precision=s.precision, batch=s.batch, form=s.form,
                                built_by="build_on_device.sh (trtexec)", onnx_metadata=meta,
                                preprocessing=meta.get("preprocessing"), power_rails=profile.power_rails,
                                gate_thresholds={str(b): "logit > 0" for b in range(len(meta.get("blocks", [])))},
                                settings={"dla_core": s.dla_core, "workspace_mib": s.workspace or profile.default_workspace_mib})
        plan = ScriptPlan(profile, name, s.form, s.precision, s.int8_path if s.precision == "int8" else None,
                          build_rel, float_rel, caches, calibrator, gate_layer_names(build_path), s.workspace,
                          s.dla_core,
                          reference=check_rels["reference"], reference_inputs=check_rels["inputs"],
                          manifest_fields=engine.to_json(),
                          candidates=device_candidates(manifest.selection, candidates, s.select),
                          timing_patterns=patterns, int8_warning=failed_preview, graph=graph_label(s))
        archive_name = f"{bundle_name(name, s)}-bundle.tar.gz"
        texts["README.md"] = bundle_readme(profile, name, graph_label(s), s.precision, note, archive_name, build_rel,
                                           s.int8_path, preview)
        final, archive, manifest = make_bundle(target.out, bundle_name(name, s), profile, files, device_script(plan),
                                               manifest, texts)
    finally:
        tmp.cleanup()
    log(f"no engine built here ({target.why}); wrote the device bundle {final} ({len(manifest.files)} files) and {archive}")
    if note:
        log(f"INT8: {note}")
    log("On the device (see its README.md):")
    quote = shlex.quote  # printed commands are pasted into a shell: a folder or target name stays one word
    log(f"  1. copy:   scp {quote(str(archive))} <user>@<device>:~/")
    log(f"  2. unpack: tar xzf {quote(archive.name)}")
    log(f"  3. build, check, time: sh {quote(final.name + '/build_on_device.sh')}      (trtexec; results in {final.name}/results/)")
    log(f"     or:     python3 deploy/build_engine.py --bundle {quote(final.name)} --target {quote(profile.name)}   "
        "(from a toolkit checkout with the device extra; checks hashes, builds with Polygraphy, runs parity)")
    return final, archive, manifest


def cache_releases(s, profile):
    """The releases of ``profile`` whose build of this bundle reads a calibration cache (the bundle carries the float
    graph and one cache for each): all for the cache path; for a Q/DQ bundle on a DLA core, those of the releases
    that can build it (trt.build.dla_releases_that_build) whose DLA takes no Q/DQ (TensorRT 8.x)."""
    from cosinegate.trt.build import dla_releases_that_build

    if s.precision != "int8" or (s.int8_path == "qdq" and s.dla_core is None):
        return []
    if s.int8_path != "qdq":
        return [str(r.version) for r in profile.tensorrt]
    building = dla_releases_that_build(profile, s.form, s.precision, s.int8_path, s.dla_core)
    return [str(r.version) for r in profile.tensorrt if str(r.version) in building and r.version.dla_int8_path == "cache"]


def board_forms(s, art):
    """The exported forms the board builds: the requested one (an INT8 bundle's float graph where cache_releases
    build from it). The flat twin is the desktop's (graph passes, calibration, bench --if-cost)."""
    return [form for form in art.forms if form == s.form]


def int8_note(profile, s, calibrator):
    """What INT8 means in this bundle, per release (manifest and README)."""
    if s.precision != "int8":
        return None
    from cosinegate.trtversion import parse_version

    notes = []
    if s.int8_path == "qdq":
        notes.append("INT8 from the Q/DQ graph (explicit quantization): strongly typed on TensorRT 9+, "
                     "--int8 --fp16 on 8.x.")
    else:
        notes.append(f"INT8 from the calibration cache ({calibrator}), masked form only: the cache is keyed to the "
                     "flat twin's tensor names, which TensorRT renames inside If branches. The bundle carries one cache "
                     "per TensorRT release (calibration-trt<version>.cache): TensorRT skips a cache of another release.")
    if s.dla_core is not None:
        for release in profile.tensorrt:
            path = parse_version(release.version).dla_int8_path
            meaning = {"cache": "the calibration cache (DLA takes no Q/DQ on 8.x)",
                       "qdq-weak": "the Q/DQ graph built weakly typed (--int8 --fp16; DLA turns on FP16)",
                       None: "not available (no DLA)"}[path if s.int8_path == "qdq" else "cache" if path else None]
            notes.append(f"DLA with TensorRT {release.version}: {meaning}.")
    return " ".join(notes)


def timing_patterns(s, art, folder):
    """One input per gate pattern of the images the board times the conditional engine on: the selection's images
    when selecting the fastest (so the board's winner comes from the images the desktop chose on), else the
    reference inputs. Returns (bundle files, patterns.txt text, manifest record)."""
    from cosinegate.bench.backends import OnnxrtBackend
    from cosinegate.trt.bundle import gate_pattern_inputs

    if s.select == "fastest":
        from cosinegate.pipeline.stages import reference_images

        batches, _ = reference_images(art.data_choice, s.select_images, s.checkpoint)
        source = f"the selection's {len(batches)} test images"
    else:
        from cosinegate.parity.compare import saved_feeds

        batches = [feed["input"] for feed in saved_feeds(art.inputs)]
        source = f"the {len(batches)} reference inputs ({INPUTS})"
    backend = OnnxrtBackend(art.forms[s.form])
    gates = [backend.run(x)[0]["gates"][0] for x in batches]
    files, text = gate_pattern_inputs(batches, gates, folder)
    return files, text, {"images": source, "patterns": len(files), "table": "timing/patterns.txt"}


def int8_preview(s, art, log=print):
    """For an INT8 bundle with a Q/DQ graph of its form: its own check run here on ONNX Runtime, logged, and a
    warning (progress.warn: stderr) when it fails (the engine on the device will most likely fail it too), with
    measured advice (cosinegate.pipeline.int8_check). None otherwise; a preview that cannot run is a warning, never a reason to
    withhold the bundle, unless ``s.require_int8_pass`` (then Int8CheckFailed, before anything is written)."""
    from cosinegate.parity import INT8
    from cosinegate.pipeline import int8_check
    from cosinegate.pipeline.int8_check import verdict
    from cosinegate.progress import warn

    if s.precision != "int8" or art.qdq_twin is None or not art.reference:
        return verdict(s, art, None, log) if s.precision == "int8" else None
    graph = Path(art.qdq_twin).name
    try:
        r = int8_check.qdq_preview(art.qdq_twin, art.inputs, art.reference)
    except Exception as exc:  # Polygraphy and ONNX Runtime raise many types; the bundle does not depend on it
        warn(log, f"warning: the INT8 preview on ONNX Runtime could not run ({type(exc).__name__}: "
                  f"{str(exc).splitlines()[0][:120] if str(exc) else ''}); the device check is the only verdict.")
        return verdict(s, art, {"passed": None, "graph": graph, "error": type(exc).__name__}, log)
    line = (f"top-1 agreement {r['top1_agreement']:.4f}, gate agreement {r['gate_agreement']:.4f} on "
            f"{r['num_samples']} reference images (ONNX Runtime, {graph})")
    if r["passed"]:
        log(f"INT8 preview: the bundle's check passes here: {line}")
    else:
        warn(log, f"warning: the bundle's INT8 check fails here already: {line}, below the int8 profile (top-1 >= "
                  f"{INT8.min_top1}, gates >= {INT8.min_gate_agreement}); the engine will most likely fail it too.")
    kept = {key: r[key] for key in ("passed", "top1_agreement", "gate_agreement", "num_samples")}
    return verdict(s, art, {**kept, "graph": graph}, log)


def device_candidates(selection, rels, select):
    """The candidates build_on_device.sh builds and times beside the conditional engine (fastest only), with
    whether their accuracy here was within tolerance."""
    if select != "fastest" or not selection:
        return {}
    return {name: {**rels[name], "eligible": bool(selection["candidates"][name].get("eligible"))}
            for name in rels if name != "conditional"}


def select_here(s, art, rels, log=print):
    """The selection on ONNX Runtime (this host has no TensorRT); logged, and recorded with bundle-relative names."""
    from cosinegate.bench.candidates import choose, max_accuracy_drop, select_onnxrt, selection_lines
    from cosinegate.parity import PROFILES
    from cosinegate.pipeline.stages import reference_images

    max_drop = max_accuracy_drop(PROFILES[s.precision])
    if s.select != "fastest":
        return {"chosen": s.select, "reason": choose(rels, max_drop, s.select)[1], "backend": None}
    batches, labels = reference_images(art.data_choice, s.select_images, s.checkpoint)
    record = select_onnxrt({n: c["onnx"] for n, c in art.candidates.items()}, batches, labels, max_drop, log=log)
    for cand, row in record["candidates"].items():
        row["onnx"] = rels[cand]["onnx"]
    log("selection on ONNX Runtime (CPU):")
    log("\n".join(selection_lines(record)))
    log("the device repeats the selection with TensorRT (build_on_device.sh, or --bundle); its choice is the one that counts.")
    return record
