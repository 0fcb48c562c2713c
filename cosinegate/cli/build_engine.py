"""Build a TensorRT engine for a target board, or the bundle the board needs to build it.

    python deploy/build_engine.py --target jetson-orin --checkpoint CKPT
    python deploy/build_engine.py --target jetson-orin --checkpoint CKPT --precision int8 --int8 cache --calib-cache calib.cache
    python deploy/build_engine.py --target jetson-orin --bundle engines/jetson-orin/model-bundle    # on the device

From a checkpoint it exports the ONNX forms (and runs INT8 calibration when asked), reusing
artifacts whose input hashes match (stage records under <out>/.work/). When TensorRT is
importable and this host matches the target (arch, compute capability, TensorRT release), it
builds engines/<target>/<model>-<form>-<precision>-trt<ver>-sm<cc>.engine with Polygraphy, writes
<engine>.json and checks parity against the saved PyTorch reference with TrtRunner
(<engine>.parity.json). Otherwise it writes the device bundle engines/<target>/<model>-bundle/
(+ .tar.gz) and prints what to copy and run on the device; --require-engine makes that an error.
Exit status: 0 done, 1 engine parity failed, 2 bad input (nothing half-written).
"""

import argparse
import shutil
from pathlib import Path

from cosinegate.defaults import ROOT
FORMS = ("conditional", "masked")


def parse_args(argv=None):
    from cosinegate.cli import HelpFormatter, add_data_flags, add_version_flag, nonnegative_int, positive_int

    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--target", required=True, help="engines/targets/<NAME>.toml")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", help="checkpoint from train/train.py (default: the embedded default model, "
                                          "runs/pipeline/balanced-resnet20/best.pt, trained first if missing)")
    src.add_argument("--onnx", help="graph from deploy/export_onnx.py")
    src.add_argument("--bundle", help="bundle folder made by this command (on the device)")
    p.add_argument("--precision", default=None, choices=("int8", "fp16", "fp32"),
                   help="engine precision (default fp16; int8 when --int8 is given)")
    p.add_argument("--int8", dest="int8_path", choices=("qdq", "cache"),
                   help="INT8 path (default: the target's); implies --precision int8")
    p.add_argument("--calib-cache", help="existing TensorRT calibration cache (--int8 cache)")
    p.add_argument("--calibration", help="existing calibration output dir (model.qdq*.onnx, calibration.cache)")
    p.add_argument("--form", default="conditional", choices=FORMS)
    p.add_argument("--batch", type=positive_int, default=1)
    p.add_argument("--opset", type=int, default=None, help="ONNX opset for export (default: the toolkit's)")
    p.add_argument("--dla-core", type=nonnegative_int, default=None)
    p.add_argument("--workspace", type=positive_int, default=None, help="workspace MiB (default: the target's)")
    p.add_argument("--timing-cache", help="timing cache file (loaded if present, saved after the build)")
    p.add_argument("--out", help="output folder (default engines/<target>)")
    p.add_argument("--require-engine", action="store_true", help="fail instead of writing a bundle")
    p.add_argument("--select", choices=("fastest", "conditional", "pruned", "dense"), default=None,
                   help="fastest (default from a checkpoint, conditional form, fp32/fp16): build the conditional, statically "
                        "pruned and gate-free dense candidates, time each, keep the fastest whose accuracy is within the "
                        "profile's tolerance of the conditional one; or force one")
    p.add_argument("--select-images", type=positive_int, default=300, help="labelled test images the candidates are timed and scored on")
    p.add_argument("--if-cost-table", help="--policy auto keeps plain the dynamic blocks whose expected saving is below their "
                                           "If cost in this table (deploy/bench.py --if-cost --json)")
    p.add_argument("--force", action="store_true", help="replace a bundle of the same name made from another model")
    p.add_argument("--json", metavar="REPORT", help="write what was built (bundle or engine manifest) here")
    add_data_flags(p)
    add_version_flag(p)
    return p.parse_args(argv)


def main(argv=None):
    from cosinegate.artifacts import folder_lock, write_error
    from cosinegate.cli import check_output_files
    from cosinegate.errors import CosineGateError
    from cosinegate.trt.build import check_int8_form, detect_host, dla_releases_that_build
    from cosinegate.trt.targets import check_dla_core, check_opset, check_workspace, host_matches, load_target

    args = parse_args(argv)
    check_output_files({"checkpoint": args.checkpoint, "graph": args.onnx, "calibration cache": args.calib_cache,
                        "timing cache": args.timing_cache, "If cost table": args.if_cost_table}, json=args.json)
    profile = load_target(args.target)
    check_workspace(args.workspace)
    if not (args.checkpoint or args.onnx or args.bundle):
        from cosinegate.defaults import default_checkpoint

        args.checkpoint = str(default_checkpoint())
    check_dla_core(profile, args.dla_core)
    args.precision = resolve_precision(args.precision, args.int8_path)
    if args.precision not in profile.precisions:
        raise CosineGateError(f"precision {args.precision} is not offered by {profile.name}; use {', '.join(profile.precisions)}.")
    if args.form == "conditional" and args.batch != 1:
        raise CosineGateError("--form conditional takes --batch 1 (an If condition is one scalar); use --form masked for batches.")
    if args.dla_core is not None and args.precision == "fp32":
        raise CosineGateError("DLA runs fp16 or int8 only; build fp16 or int8, or drop --dla-core.")
    int8_path = args.int8_path = args.int8_path or profile.default_int8_path
    if args.precision == "int8" and int8_path not in profile.int8_paths:
        raise CosineGateError(f"INT8 path {int8_path} is not offered by {profile.name}; use {', '.join(profile.int8_paths)}.")
    if not args.bundle:
        check_int8_form(args.form, args.precision, int8_path)
        dla_releases_that_build(profile, args.form, args.precision, int8_path, args.dla_core)
    if not args.bundle and args.precision == "int8" and int8_path == "qdq" and args.batch != 1:
        raise CosineGateError(f"--int8 qdq builds the calibrated Q/DQ graph, which has batch 1, not --batch {args.batch}; "
                              "use --int8 cache for batches, or --batch 1.")
    if args.precision == "int8" and not (args.checkpoint or args.bundle or args.calib_cache or args.calibration):
        raise CosineGateError("INT8 needs calibration data or a cache: pass --checkpoint (calibrates), --calibration DIR or --calib-cache FILE.")
    if args.calib_cache and not Path(args.calib_cache).is_file():
        raise CosineGateError(f"calibration cache {args.calib_cache} not found; check the path or rerun calibration.")
    if args.calib_cache:
        from cosinegate.quant.cache import parse_cache

        parse_cache(args.calib_cache)  # the checks calibrate --cache-in makes: header, finite scales > 0
    host = detect_host()
    can_build, why = (False, "TensorRT is not installed here") if host.trt_version is None else host_matches(profile, host)
    if args.require_engine and not can_build:
        raise CosineGateError(f"--require-engine: cannot build a {profile.name} engine on this host ({why}); run on the device.")
    args.select = resolve_select(args)
    out = Path(args.out) if args.out else ROOT / "engines" / profile.name
    if args.bundle:
        return from_bundle(args, profile, host, can_build, why, out)
    opset = args.opset
    if opset is None:
        from cosinegate.onnx import DEFAULT_OPSET

        opset = DEFAULT_OPSET
    check_opset(profile, opset, host.trt_version if can_build else None)
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(out, exc) from exc
    try:
        with folder_lock(out, "build_engine.py"):  # stages, bundle and engine of two runs would mix
            if not can_build:
                from cosinegate.pipeline import model_name

                refuse_overwrite(out / f"{bundle_name(model_name(args.checkpoint or args.onnx), args)}-bundle", args)
            artifacts = prepare(args, profile, int8_path, opset)
            if can_build and args.select == "fastest":
                return select_engines(args, profile, host, artifacts, out)
            if can_build:
                return build_here(args, profile, host, artifacts, out)
            return bundle(args, profile, artifacts, out, why)
    except BaseException:
        if created:  # a folder this run made holds only what it left half-done
            shutil.rmtree(out, ignore_errors=True)
        raise


def resolve_select(args):
    """The --select in force: fastest by default where the candidates can be made, else the conditional graph."""
    from cosinegate.errors import CosineGateError

    if args.bundle:  # the bundle's manifest names its candidates; --select pruned|dense builds one of them
        return args.select if args.select in ("pruned", "dense") else "conditional"
    possible = bool(args.checkpoint) and args.form == "conditional" and args.precision != "int8"
    why = ("it needs --checkpoint" if not args.checkpoint else "it takes --form conditional" if args.form != "conditional"
           else "INT8 candidates would each need their own Q/DQ graph and calibration")
    if args.select is None:
        if not possible and args.checkpoint and not args.bundle:
            print(f"selection: building the {args.form} graph only ({why}); --select conditional silences this.")
        return "fastest" if possible else "conditional"
    if args.select != "conditional" and not possible:
        raise CosineGateError(f"--select {args.select} is not available here: {why}; use --select conditional.")
    if args.select_images < 1:
        raise CosineGateError("--select-images must be at least 1.")
    return args.select


def resolve_precision(precision, int8_path):
    """--int8 PATH means an INT8 build: it implies --precision int8 and contradicts fp16/fp32."""
    from cosinegate.errors import CosineGateError

    if int8_path is not None and precision not in (None, "int8"):
        raise CosineGateError(f"--int8 {int8_path} is an INT8 path but --precision {precision} was asked for; "
                              "drop --int8 or use --precision int8.")
    if precision is None:
        return "int8" if int8_path is not None else "fp16"
    return precision


def prepare(args, profile, int8_path, opset):
    """Run/reuse the stages; return {"name", "onnx": build graph, "forms": {...}, "cache", "reference", "inputs"}."""
    import onnx

    from cosinegate.errors import CosineGateError
    from cosinegate.pipeline import Stages, calibration_files, decision_counts, model_name
    from cosinegate.trt.targets import check_opset

    art = {"cache": None, "reference": None, "inputs": None, "forms": {}, "calibration": None, "data": None}
    if args.checkpoint:
        from cosinegate.data.choice import DataOrigin, choose_data
        from cosinegate.onnx.export import get_metadata
        from cosinegate.training.checkpoint import load_checkpoint

        if not Path(args.checkpoint).is_file():
            raise CosineGateError(f"checkpoint {args.checkpoint} not found; check the path.")
        from cosinegate.training.checkpoint import check_image_size

        state = load_checkpoint(args.checkpoint)
        check_image_size(args.image_size, state, args.checkpoint)
        data = choose_data(DataOrigin.of_checkpoint(state), args.data, args.data_root)
        art["data"] = data.record()
        name = model_name(args.checkpoint)
        stages = Stages(Path(args.out or ROOT / "engines" / profile.name) / ".work" / name)
        art["forms"][args.form] = stages.export(args.checkpoint, args.form, args.batch, opset, if_cost_table=args.if_cost_table)
        art["forms"]["flat"] = stages.export(args.checkpoint, "flat", args.batch, opset)
        art["onnx"] = art["forms"][args.form]
        art["reference"], art["inputs"], ref_report = stages.reference(args.checkpoint, art["onnx"], data)
        kinds = [b["kind"] for b in get_metadata(onnx.load(str(art["onnx"]), load_external_data=False))["blocks"]]
        art["reference_decisions"] = decision_counts(ref_report, kinds)
        if art["reference_decisions"]["dynamic_blocks_seen_one_way"]:
            print(f"note: the {ref_report['num_samples']} reference images see dynamic block(s) "
                  f"{art['reference_decisions']['dynamic_blocks_seen_one_way']} decide only one way")
        if args.select != "conditional":
            from cosinegate.pipeline import candidate_graphs

            names = ("pruned", "dense") if args.select == "fastest" else (args.select,)
            art["candidates"] = candidate_graphs(stages, args.checkpoint, opset, names, data)
            art["candidates"]["conditional"] = {"onnx": art["onnx"], "reference": art["reference"], "inputs": art["inputs"]}
            if args.select != "fastest":  # forced: that candidate is the build graph
                chosen = art["candidates"][args.select]
                art["onnx"], art["reference"], art["inputs"] = chosen["onnx"], chosen["reference"], chosen["inputs"]
        art["data_choice"] = data
        art["stages"] = {"reused": stages.reused, "made": stages.made}
    else:
        from cosinegate.onnx import load_toolkit_onnx
        from cosinegate.trt.trtexec import check_layer_names

        model = check_layer_names(load_toolkit_onnx(args.onnx), args.onnx)
        check_opset(profile, onnx_opset(model, default=opset))
        name = model_name(args.onnx)
        art["onnx"] = art["forms"][args.form] = Path(args.onnx)
        stages = None
    art["name"] = name
    if args.precision == "int8":
        calib_dir = args.calibration
        if calib_dir is None and args.calib_cache is None:
            calib_dir = stages.calibrate(args.checkpoint, data, args.form)
        if calib_dir:
            qdq, cache = calibration_files(calib_dir, args.form, args.checkpoint)
            art["calibration"] = str(calib_dir)
            art["cache"] = cache
            if int8_path == "qdq":
                if qdq is None:
                    raise CosineGateError(f"--int8 qdq --form {args.form} needs the {args.form} Q/DQ graph in {calib_dir}; "
                                          f"rerun calibration/calibrate.py --forms flat,{args.form}, or use --int8 cache.")
                from cosinegate.trt.trtexec import check_layer_names

                check_layer_names(onnx.load(str(qdq), load_external_data=False), qdq)
                art["qdq"] = qdq
                art["onnx"] = qdq
            if int8_path == "qdq" or not args.calib_cache:  # the shipped cache is this folder's: same amax values
                art["qdq_twin"] = qdq  # as a graph ONNX Runtime runs: a forecast of the engine
        if args.calib_cache:
            art["cache"] = Path(args.calib_cache)
        if int8_path == "cache" and art["cache"] is None:
            raise CosineGateError("--int8 cache needs a calibration cache and none was found; pass --calib-cache FILE.")
        if int8_path == "cache":
            check_cache_covers(art["cache"], art["onnx"])
        check_opset(profile, onnx_opset(onnx.load(str(art["onnx"]), load_external_data=False)))
    return art


def check_cache_covers(cache, graph_path):
    """A calibration cache must hold a scale for every tensor the graph quantizes (the check calibrate --cache-in
    makes): a cache made for another model is refused instead of leaving those tensors without a range."""
    import onnx

    from cosinegate.errors import CosineGateError
    from cosinegate.quant.cache import parse_cache
    from cosinegate.quant.calibrate import quantized_tensors

    _, scales = parse_cache(cache)
    missing = [t for t in quantized_tensors(onnx.load(str(graph_path), load_external_data=False)) if t not in scales]
    if missing:
        raise CosineGateError(f"calibration cache {cache} has no scale for {len(missing)} tensor(s) of {graph_path} "
                              f"({', '.join(missing[:3])}...): it was made for another model; recalibrate this one "
                              "(calibration/calibrate.py) or pass its cache.")


def _settings(args, profile, version, art):
    from cosinegate.trt.build import build_settings, gate_layer_names

    return build_settings(profile, version, args.precision, args.int8_path, art.get("cache"), args.dla_core, args.workspace,
                          args.timing_cache, gate_layer_names(art["onnx"]), form=args.form)


def int8_note(profile, args, calibrator):
    """What INT8 means in this bundle, per release (manifest and README)."""
    if args.precision != "int8":
        return None
    from cosinegate.trt.versions import parse_version

    notes = []
    if args.int8_path == "qdq":
        notes.append("INT8 from the Q/DQ graph (explicit quantization): strongly typed on TensorRT 9+, "
                     "--int8 --fp16 on 8.x.")
    else:
        notes.append(f"INT8 from the calibration cache ({calibrator}), masked form only: the cache is keyed to the "
                     "flat twin's tensor names, which TensorRT renames inside If branches. The bundle carries one cache "
                     "per TensorRT release (calibration-trt<version>.cache): TensorRT skips a cache of another release.")
    if args.dla_core is not None:
        for release in profile.tensorrt:
            path = parse_version(release.version).dla_int8_path
            meaning = {"cache": "the calibration cache (DLA takes no Q/DQ on 8.x)",
                       "qdq-weak": "the Q/DQ graph built weakly typed (--int8 --fp16; DLA turns on FP16)",
                       None: "not available (no DLA)"}[path if args.int8_path == "qdq" else "cache" if path else None]
            notes.append(f"DLA with TensorRT {release.version}: {meaning}.")
    return " ".join(notes)


def bundle(args, profile, art, out, why):
    import json
    import shlex

    from cosinegate.errors import CosineGateError
    from cosinegate.graphmeta import get_metadata
    from cosinegate.onnx import matching_manifest
    from cosinegate.trt.build import cache_calibrator, gate_layer_names
    from cosinegate.trt.bundle import (PATTERNS, input_bin, make_bundle, polygraphy_tolerance, release_cache_name,
                                       release_caches)
    from cosinegate.trt.bundle_readme import bundle_readme
    from cosinegate.trt.device_script import ScriptPlan, device_script
    from cosinegate.artifacts import atomic_write_json, sha256_file
    from cosinegate.graphmeta import card_of
    from cosinegate.parity import device_check
    from cosinegate.pipeline import parity_profile

    name = art["name"]
    files, texts = {}, {}
    for form, path in art["forms"].items():
        files[f"model.{form}.onnx"] = path
        if matching_manifest(path) is not None:  # a manifest naming another graph (a killed export) stays out
            files[f"model.{form}.onnx.json"] = Path(f"{path}.json")
    float_rel = build_rel = f"model.{args.form}.onnx"
    if art.get("calibration"):
        for extra in sorted(Path(art["calibration"]).glob("*")):
            if extra.is_file() and not extra.name.endswith(".stage.json"):
                files[f"calibration/{extra.name}"] = extra
        if art.get("qdq"):
            build_rel = f"calibration/{Path(art['qdq']).name}"
    calibrator, caches = None, {}
    if art.get("cache") and args.precision == "int8":
        calibrator = cache_calibrator(art["cache"])
        for version, text in release_caches(art["cache"], profile).items():
            texts[release_cache_name(version)] = text
            caches[version] = release_cache_name(version)
    if not art.get("reference"):
        raise CosineGateError("a bundle needs the PyTorch reference (reference.json, inputs.json), made from --checkpoint; "
                              "pass --checkpoint instead of --onnx.")
    files["reference.json"] = art["reference"]
    files["inputs.json"] = art["inputs"]
    files["check_parity.py"] = Path(device_check.__file__)  # the profile's check, numpy + Polygraphy only
    texts["parity_profile.json"] = json.dumps(parity_profile(args.precision), indent=2) + "\n"
    card = card_of(_onnx_meta(art["onnx"]))
    if card.get("classes"):
        texts["labels.txt"] = "".join(f"{c}\n" for c in card["classes"])
    candidates = {}
    for cand, paths in art.get("candidates", {}).items():
        suffix = "" if cand == "conditional" else f".{cand}"
        rels = {"onnx": f"model.{cand}.onnx", "reference": f"reference{suffix}.json", "inputs": f"inputs{suffix}.json"}
        for key, rel in rels.items():
            files.setdefault(rel, paths[key])
        candidates[cand] = rels
    check_rels = {"reference": "reference.json", "inputs": "inputs.json"}
    if args.select not in ("fastest", "conditional"):
        build_rel = float_rel = f"model.{args.select}.onnx"
        check_rels = {key: candidates[args.select][key] for key in check_rels}
    import onnx
    import tempfile

    tmp = tempfile.TemporaryDirectory(prefix="cg-bundle.")
    files["input.bin"] = Path(tmp.name) / "input.bin"
    input_bin(art["inputs"], files["input.bin"])
    patterns, timing = None, None
    if args.form == "conditional" and args.select in ("fastest", "conditional"):
        pattern_files, texts[PATTERNS], timing = timing_patterns(args, art, tmp.name)
        files.update(pattern_files)
        patterns = PATTERNS
    build_path = files.get(build_rel, art["onnx"])
    meta = get_metadata(onnx.load(str(build_path), load_external_data=False))
    note = int8_note(profile, args, calibrator)
    preview = int8_preview(args, art)
    fields = {"model": name, "target": profile.name, "form": args.form, "precision": args.precision, "batch": args.batch,
              "int8_path": args.int8_path if args.precision == "int8" else None, "build_onnx": build_rel,
              "float_onnx": float_rel, "calibration_caches": caches or None, "calibrator": calibrator,
              "dla_core": args.dla_core, "int8": note, "source": str(args.checkpoint or args.onnx),
              "source_sha256": sha256_file(args.checkpoint or args.onnx), "data": art.get("data"),
              "reference": art.get("reference_decisions"), "card": card, "parity_profile": parity_profile(args.precision),
              "int8_preview_onnxrt": preview, "timing": timing}
    if candidates:
        fields.update(candidates=candidates, selection=select_here(args, art, candidates))
    engine_fields = {"model": name, "target": profile.name, "precision": args.precision, "batch": args.batch,
                     "form": args.form, "built_by": "build_on_device.sh (trtexec)", "onnx_metadata": meta,
                     "gate_thresholds": {str(b): "logit > 0" for b in range(len(meta.get("blocks", [])))},
                     "settings": {"dla_core": args.dla_core, "workspace_mib": args.workspace or profile.default_workspace_mib}}
    plan = ScriptPlan(profile, name, args.form, args.precision, args.int8_path if args.precision == "int8" else None,
                      build_rel, float_rel, caches, calibrator, args.batch, gate_layer_names(build_path), args.workspace,
                      args.dla_core, tolerance_args=tuple(shlex.split(polygraphy_tolerance(args.precision))),
                      reference=check_rels["reference"], reference_inputs=check_rels["inputs"], manifest_fields=engine_fields,
                      candidates=device_candidates(fields.get("selection"), candidates, args.select),
                      timing_patterns=patterns)
    archive_name = f"{bundle_name(name, args)}-bundle.tar.gz"
    texts["README.md"] = bundle_readme(profile, name, args.form, args.precision, note, archive_name)
    try:
        final, archive, manifest = make_bundle(out, bundle_name(name, args), profile, files, device_script(plan), fields, texts)
    finally:
        tmp.cleanup()
    print(f"no engine built here ({why}); wrote the device bundle {final} ({len(manifest['files'])} files) and {archive}")
    if note:
        print(f"INT8: {note}")
    print("On the device (see its README.md):")
    quote = shlex.quote  # printed commands are pasted into a shell: a folder or target name stays one word
    print(f"  1. copy:   scp {quote(str(archive))} <user>@<device>:~/")
    print(f"  2. unpack: tar xzf {quote(archive.name)}")
    print(f"  3. build, check, time: sh {quote(final.name + '/build_on_device.sh')}      (trtexec; results in {final.name}/results/)")
    print(f"     or:     python3 deploy/build_engine.py --bundle {quote(final.name)} --target {quote(profile.name)}   "
          "(from a toolkit checkout with the device extra; checks hashes, builds with Polygraphy, runs parity)")
    if args.json:
        atomic_write_json(args.json, manifest)
    return 0


def timing_patterns(args, art, folder):
    """One input per gate pattern of the images the board times the conditional engine on: the selection's images
    with --select fastest (so the board's winner comes from the images the desktop chose on), else the reference
    inputs. Returns (bundle files, patterns.txt text, manifest record)."""
    from cosinegate.bench.backends import OnnxrtBackend
    from cosinegate.trt.bundle import gate_pattern_inputs

    if args.select == "fastest":
        from cosinegate.pipeline import reference_images

        batches, _ = reference_images(art["data_choice"], args.select_images, args.checkpoint)
        source = f"the selection's {len(batches)} test images"
    else:
        from polygraphy.json import load_json

        batches = [feed["input"] for feed in load_json(str(art["inputs"]))]
        source = f"the {len(batches)} reference inputs (inputs.json)"
    backend = OnnxrtBackend(art["forms"][args.form])
    gates = [backend.run(x)[0]["gates"][0] for x in batches]
    files, text = gate_pattern_inputs(batches, gates, folder)
    return files, text, {"images": source, "patterns": len(files), "table": "timing/patterns.txt"}


def int8_preview(args, art):
    """For an INT8 bundle with a Q/DQ graph of its form: its own check run here on ONNX Runtime, printed, and a
    warning when it fails (the engine on the device will most likely fail it too). None otherwise; a preview that
    cannot run is a warning, never a reason to withhold the bundle."""
    from cosinegate.parity import INT8

    if args.precision != "int8" or art.get("qdq_twin") is None or not art.get("reference"):
        return None
    graph = Path(art["qdq_twin"]).name
    try:
        r = qdq_preview(art["qdq_twin"], art["inputs"], art["reference"])
    except Exception as exc:  # Polygraphy and ONNX Runtime raise many types; the bundle does not depend on it
        print(f"warning: the INT8 preview on ONNX Runtime could not run ({type(exc).__name__}: "
              f"{str(exc).splitlines()[0][:120] if str(exc) else ''}); the device check is the only verdict.")
        return {"passed": None, "graph": graph, "error": type(exc).__name__}
    line = (f"top-1 agreement {r['top1_agreement']:.4f}, gate agreement {r['gate_agreement']:.4f} on "
            f"{r['num_samples']} reference images (ONNX Runtime, {graph})")
    if r["passed"]:
        print(f"INT8 preview: the bundle's check passes here: {line}")
    else:
        print(f"warning: the bundle's INT8 check fails here already: {line}, below the int8 profile (top-1 >= "
              f"{INT8.min_top1}, gates >= {INT8.min_gate_agreement}); the engine will most likely fail it too: "
              f"calibrate with python calibration/calibrate.py --checkpoint CKPT --method percentile --forms "
              f"flat,{args.form} --out DIR (or another method, more --calib-images) and pass --calibration DIR, or build fp16.")
    kept = {key: r[key] for key in ("passed", "top1_agreement", "gate_agreement", "num_samples")}
    return {**kept, "graph": graph}


def device_candidates(selection, rels, select):
    """The candidates build_on_device.sh builds and times beside the conditional engine (--select fastest only),
    with whether their accuracy here was within tolerance."""
    if select != "fastest" or not selection:
        return {}
    return {name: {**rels[name], "eligible": bool(selection["candidates"][name].get("eligible"))}
            for name in rels if name != "conditional"}


def select_here(args, art, rels):
    """The selection on ONNX Runtime (this host has no TensorRT); printed, and recorded with bundle-relative names."""
    from cosinegate.bench.candidates import choose, max_accuracy_drop, select_onnxrt, selection_lines
    from cosinegate.parity import PROFILES
    from cosinegate.pipeline import reference_images

    max_drop = max_accuracy_drop(PROFILES[args.precision])
    if args.select != "fastest":
        return {"chosen": args.select, "reason": choose(rels, max_drop, args.select)[1], "backend": None}
    batches, labels = reference_images(art["data_choice"], args.select_images, args.checkpoint)
    record = select_onnxrt({n: c["onnx"] for n, c in art["candidates"].items()}, batches, labels, max_drop)
    for cand, row in record["candidates"].items():
        row["onnx"] = rels[cand]["onnx"]
    print("selection on ONNX Runtime (CPU):")
    print("\n".join(selection_lines(record)))
    print("the device repeats the selection with TensorRT (build_on_device.sh, or --bundle); its choice is the one that counts.")
    return record


def bundle_name(model, args):
    """Bundles of one model for other forms, precisions or DLA cores get their own folders."""
    return f"{model}-{args.form}-{args.precision}" + (f"-dla{args.dla_core}" if args.dla_core is not None else "")


def refuse_overwrite(final, args):
    """A bundle folder made from another model is not replaced without --force."""
    from cosinegate.artifacts import read_json, sha256_file
    from cosinegate.errors import CosineGateError

    manifest = final / "manifest.json"
    if args.force or not manifest.is_file():
        return
    made_from = read_json(manifest, "bundle manifest").get("source_sha256")
    if made_from != sha256_file(args.checkpoint or args.onnx):
        raise CosineGateError(f"{final} holds a bundle of another model (sha256 {str(made_from)[:16]}...); "
                              "pass --out DIR for a separate folder, or --force to replace it.")


def from_bundle(args, profile, host, can_build, why, out):
    from cosinegate.errors import CosineGateError
    from cosinegate.trt.manifest import bundle_member, listed_member, verify_bundle
    from cosinegate.trt.targets import check_opset

    bundle_dir = Path(args.bundle)
    manifest = verify_bundle(bundle_dir)
    if manifest.get("target") != profile.name:
        raise CosineGateError(f"bundle {bundle_dir} was made for {manifest.get('target')!r}, not {profile.name}; pass --target {manifest.get('target')}.")
    fields = bundle_fields(manifest, profile)
    import onnx

    onnx_path = listed_member(bundle_dir, manifest, "build_onnx")
    if onnx_path is None:
        raise CosineGateError(f"bundle {bundle_dir} names no build_onnx; re-create the bundle.")
    reference = "reference.json" in manifest["files"] and "inputs.json" in manifest["files"]
    art = {"name": fields["model"], "onnx": onnx_path, "cache": listed_member(bundle_dir, manifest, "calibration_cache"),
           "reference": bundle_member(bundle_dir, "reference.json") if reference else None,
           "inputs": bundle_member(bundle_dir, "inputs.json") if reference else None, "forms": {}}
    from cosinegate.trt.trtexec import check_layer_names

    graph = check_layer_names(onnx.load(str(onnx_path), load_external_data=False), onnx_path)
    check_opset(profile, onnx_opset(graph), host.trt_version if can_build else None)
    if not can_build:
        print(f"bundle {bundle_dir} verified ({len(manifest['files'])} files, hashes match); no engine built here ({why}).")
        return 0
    args.precision, args.form, args.batch, args.int8_path = fields["precision"], fields["form"], fields["batch"], fields["int8_path"]
    args.dla_core = fields["dla_core"]
    version = host.trt_version
    if args.int8_path == "qdq" and args.dla_core is not None and version.dla_int8_path == "cache":
        args.int8_path, art["onnx"] = "cache", listed_member(bundle_dir, manifest, "float_onnx")  # DLA takes no Q/DQ on 8.x
        print(f"INT8 on DLA with TensorRT {version}: building {art['onnx'].name} from the calibration cache")
    caches = manifest.get("calibration_caches") or {}
    if not isinstance(caches, dict):
        raise CosineGateError("the bundle manifest's calibration_caches is not a table of release: file; re-create the bundle.")
    release = ".".join(str(version._part(i)) for i in range(3))
    if art["cache"] is None and caches.get(release) is not None:
        art["cache"] = listed_member(bundle_dir, {"files": manifest["files"], "cache": caches[release]}, "cache")
    if args.select in ("pruned", "dense"):
        rels = manifest.get("candidates", {}).get(args.select) if isinstance(manifest.get("candidates"), dict) else None
        if not isinstance(rels, dict):
            raise CosineGateError(f"bundle {bundle_dir} has no {args.select} candidate; re-create it with --select fastest.")
        for key in ("onnx", "reference", "inputs"):
            if not isinstance(rels.get(key), str) or rels[key] not in manifest["files"]:
                raise CosineGateError(f"bundle {bundle_dir} names {args.select} files it does not list; re-create the bundle.")
            art[key] = bundle_member(bundle_dir, rels[key], f"{args.select} {key}")
    return build_here(args, profile, host, art, out)


def bundle_fields(manifest, profile):
    """The manifest values that name outputs or choose the build, checked: plain names and known choices only."""
    from cosinegate.errors import CosineGateError
    from cosinegate.trt.manifest import safe_name
    from cosinegate.trt.targets import check_dla_core

    fields = {"model": safe_name(manifest.get("model"), "bundle model name")}
    for key, choices in (("form", FORMS), ("precision", profile.precisions)):
        fields[key] = manifest.get(key)
        if fields[key] not in choices:
            raise CosineGateError(f"bundle {key} {fields[key]!r} is not one of {', '.join(choices)}; re-create the bundle.")
    batch = manifest.get("batch")
    if type(batch) is not int or not 1 <= batch <= 4096:
        raise CosineGateError(f"bundle batch {batch!r} is not a whole number from 1 to 4096; re-create the bundle.")
    fields["batch"] = batch
    fields["int8_path"] = manifest.get("int8_path")
    fields["dla_core"] = manifest.get("dla_core")
    if fields["dla_core"] is not None:
        if type(fields["dla_core"]) is not int:
            raise CosineGateError(f"bundle dla_core {fields['dla_core']!r} is not a core number; re-create the bundle.")
        check_dla_core(profile, fields["dla_core"])
    if fields["precision"] == "int8" and fields["int8_path"] not in profile.int8_paths:
        raise CosineGateError(f"bundle int8_path {fields['int8_path']!r} is not one of {', '.join(profile.int8_paths)}; re-create the bundle.")
    return fields


def build_here(args, profile, host, art, out):
    """Build the engine with Polygraphy (atomically), write its manifest, run TrtRunner parity."""
    _, report = build_one(args, profile, host, art, out, args.select if args.select in ("pruned", "dense") else args.form)
    return 0 if report is None or report["passed"] else 1


def select_engines(args, profile, host, art, out):
    """--select fastest with TensorRT here: build and check every candidate engine, time each with the bench's
    TensorRT backend on the reference images, keep the fastest within the profile's accuracy tolerance."""
    from cosinegate.artifacts import atomic_write_json
    from cosinegate.bench.backends import TrtBackend
    from cosinegate.bench.candidates import compare_candidates, max_accuracy_drop, selection_lines
    from cosinegate.parity import PROFILES
    from cosinegate.pipeline import reference_images
    from cosinegate.trt.manifest import read_engine_manifest, write_engine_manifest

    engines, extra = {}, {}
    for name, paths in art["candidates"].items():
        engine, report = build_one(args, profile, host, dict(art, **paths), out, name)
        engines[name] = engine
        extra[name] = {"engine": engine.name, "onnx": str(paths["onnx"]), "parity_passed": bool(report and report["passed"])}
    batches, labels = reference_images(art["data_choice"], args.select_images, args.checkpoint)
    record = compare_candidates({n: TrtBackend(e) for n, e in engines.items()}, batches, labels,
                                max_accuracy_drop(PROFILES[args.precision]), extra=extra, clock="gpu")
    record.update(backend="trt")
    print("\n".join(selection_lines(record)))
    chosen = engines[record["chosen"]]
    manifest = {k: v for k, v in read_engine_manifest(chosen).items() if k not in ("format", "engine_sha256")}
    write_engine_manifest(chosen, **manifest, selection=record)
    atomic_write_json(out / f"{art['name']}-selection.json", record)
    print(f"deploy {chosen} (selection in {chosen}.json and {out / (art['name'] + '-selection.json')})")
    return 0 if extra[record["chosen"]]["parity_passed"] else 1


def build_one(args, profile, host, art, out, label):
    """Build one engine (``label`` names it: the form or the candidate), its manifest and its parity report."""
    from cosinegate.artifacts import atomic_path, atomic_write_json, sha256_file
    from cosinegate.trt.build import build_engine
    from cosinegate.graphmeta import card_of
    from cosinegate.trt.manifest import write_engine_manifest
    from cosinegate.trt.targets import compute_capability_text

    version, cc = host.trt_version, compute_capability_text(host.compute_capability)
    settings = _settings(args, profile, version, art)
    out.mkdir(parents=True, exist_ok=True)
    engine = out / f"{art['name']}-{label}-{args.precision}-trt{version}-sm{cc.replace('.', '')}.engine"
    with atomic_path(engine) as tmp:
        seconds = build_engine(art["onnx"], tmp, settings)
    meta = _onnx_meta(art["onnx"])
    write_engine_manifest(
        engine, model=art["name"], target=profile.name, trt_version=str(version), compute_capability=cc,
        precision=args.precision, batch=args.batch, form=args.form, build_seconds=round(seconds, 2),
        settings=settings.to_json(), inputs={"onnx": str(art["onnx"]), "onnx_sha256": sha256_file(art["onnx"])},
        calibration_sha256=sha256_file(settings.calib_cache) if settings.calib_cache else None,  # the cache it read
        gate_thresholds={b: "logit > 0" for b in range(len(meta.get("blocks", [])))}, onnx_metadata=meta,
        card=card_of(meta), reference_inputs=str(art["inputs"]) if art.get("inputs") else None,
    )
    print(f"built {engine} in {seconds:.1f}s (TensorRT {version}, sm{cc}); manifest {engine}.json")
    if not art.get("reference"):
        return engine, None
    report = engine_parity(engine, art["inputs"], art["reference"], args.precision)
    atomic_write_json(f"{engine}.parity.json", report)
    print(f"parity vs PyTorch reference: {'passed' if report['passed'] else 'FAILED'} -> {engine}.parity.json")
    return engine, report


def onnx_opset(model, default=None):
    """The default-domain opset a model imports."""
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=default)


def _onnx_meta(path):
    import onnx

    from cosinegate.graphmeta import get_metadata

    return get_metadata(onnx.load(str(path), load_external_data=False))


def engine_parity(engine, inputs_json, reference_json, precision):
    """Polygraphy TrtRunner on the saved inputs vs the saved PyTorch outputs, under the precision's profile."""
    from polygraphy.backend.common import BytesFromPath
    from polygraphy.backend.trt import EngineFromBytes, TrtRunner
    from polygraphy.json import load_json

    return saved_parity(TrtRunner(EngineFromBytes(BytesFromPath(str(engine))), name="trt"), load_json(str(inputs_json)),
                        reference_json, precision)


def qdq_preview(qdq, inputs_json, reference_json):
    """The bundle's INT8 check run here on ONNX Runtime with the Q/DQ graph: a forecast, not the engine's verdict.
    The Q/DQ graphs have batch 1, so a masked bundle's batches are fed one image at a time (gates are per image)."""
    from polygraphy.json import load_json

    from cosinegate.parity.compare import graph_runner

    feeds = [{name: x[i : i + 1] for name, x in feed.items()} for feed in load_json(str(inputs_json))
             for i in range(len(next(iter(feed.values()))))]
    return saved_parity(graph_runner(qdq, "onnxrt"), feeds, reference_json, "int8")


def saved_parity(runner, feeds, reference_json, precision):
    """A Polygraphy runner on feed dicts vs the saved PyTorch outputs, under the precision's profile."""
    from polygraphy.comparator import Comparator, RunResults

    from cosinegate.parity import PROFILES, agreement_report
    from cosinegate.parity.compare import stack_iterations

    reference = RunResults.load(str(reference_json))
    results = Comparator.run([runner], data_loader=feeds)
    return {"precision": precision, **agreement_report(stack_iterations(reference[0][1]), stack_iterations(results[0][1]),
                                                       PROFILES[precision])}


if __name__ == "__main__":
    from cosinegate.cli import run_main

    run_main(main)
