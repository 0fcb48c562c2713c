"""On the device: verify a bundle (hashes, plain names, known choices) and build its engine where TensorRT is here."""

from dataclasses import replace
from pathlib import Path

from cosinegate.errors import CosineGateError
from cosinegate.pipeline.plan import FORMS, Artifacts


def from_bundle(s, target, log=print):
    """Check the bundle ``s.bundle`` (its hashes verified by plan.resolve: ``target.bundle``; here its names and
    choices); build and check its engine when this host can. (engine or None, parity passed or None)."""
    from cosinegate.onnx import read_onnx
    from cosinegate.pipeline.engine import build_here, onnx_opset
    from cosinegate.trt.manifest import bundle_member, listed_member, safe_name
    from cosinegate.trt.targets import check_opset
    from cosinegate.layernames import check_layer_names

    profile, host = target.profile, target.host
    bundle_dir = Path(s.bundle)
    manifest = target.bundle  # verified by plan.resolve
    safe_name(manifest.target, "bundle target name")
    if manifest.target != profile.name:  # --target NAME takes the profile the bundle carries (plan.target_profile)
        raise CosineGateError(f"bundle {bundle_dir} was made for {manifest.target!r}, not {profile.name}; pass --target {manifest.target}.")
    s = replace(s, **bundle_fields(manifest, profile))
    onnx_path = listed_member(bundle_dir, manifest, manifest.build_onnx, "build_onnx")
    if onnx_path is None:
        raise CosineGateError(f"bundle {bundle_dir} names no build_onnx; re-create the bundle.")
    reference = "reference.json" in manifest.files and "inputs.npz" in manifest.files
    art = Artifacts(manifest.model, onnx_path, cache=listed_member(bundle_dir, manifest, manifest.calibration_cache, "calibration_cache"),
                    reference=bundle_member(bundle_dir, "reference.json") if reference else None,
                    inputs=bundle_member(bundle_dir, "inputs.npz") if reference else None)
    graph = check_layer_names(read_onnx(onnx_path), onnx_path)
    check_opset(profile, onnx_opset(graph), host.trt_version if target.can_build else None)
    if not target.can_build:
        log(f"bundle {bundle_dir} verified ({len(manifest.files)} files, hashes match); no engine built here ({target.why}).")
        return None, None
    version = host.trt_version
    if s.int8_path == "qdq" and s.dla_core is not None and version.dla_int8_path == "cache":
        s = replace(s, int8_path="cache")  # DLA takes no Q/DQ on 8.x
        art.onnx = listed_member(bundle_dir, manifest, manifest.float_onnx, "float_onnx")
        log(f"INT8 on DLA with TensorRT {version}: building {art.onnx.name} from the calibration cache")
    caches = manifest.calibration_caches or {}
    if not isinstance(caches, dict):
        raise CosineGateError("the bundle manifest's calibration_caches is not a table of release: file; re-create the bundle.")
    release = version.release
    if art.cache is None and caches.get(release) is not None:
        art.cache = listed_member(bundle_dir, manifest, caches[release], "cache")
    if s.select in ("pruned", "dense"):
        rels = manifest.candidates.get(s.select) if isinstance(manifest.candidates, dict) else None
        if not isinstance(rels, dict):
            raise CosineGateError(f"bundle {bundle_dir} has no {s.select} candidate; re-create it with --select fastest.")
        for key in ("onnx", "reference", "inputs"):
            if not isinstance(rels.get(key), str) or rels[key] not in manifest.files:
                raise CosineGateError(f"bundle {bundle_dir} names {s.select} files it does not list; re-create the bundle.")
            setattr(art, key, bundle_member(bundle_dir, rels[key], f"{s.select} {key}"))
    return build_here(s, target, art, log)


def bundle_fields(manifest, profile):
    """The manifest values that name outputs or choose the build, checked: plain names and known choices only."""
    from cosinegate.trt.manifest import safe_name
    from cosinegate.trt.targets import check_dla_core

    safe_name(manifest.model, "bundle model name")
    fields = {}
    for key, choices in (("form", FORMS), ("precision", profile.precisions)):
        fields[key] = getattr(manifest, key)
        if fields[key] not in choices:
            raise CosineGateError(f"bundle {key} {fields[key]!r} is not one of {', '.join(choices)}; re-create the bundle.")
    batch = manifest.batch
    if type(batch) is not int or not 1 <= batch <= 4096:
        raise CosineGateError(f"bundle batch {batch!r} is not a whole number from 1 to 4096; re-create the bundle.")
    fields["batch"] = batch
    fields["int8_path"] = manifest.int8_path
    fields["dla_core"] = manifest.dla_core
    if fields["dla_core"] is not None:
        if type(fields["dla_core"]) is not int:
            raise CosineGateError(f"bundle dla_core {fields['dla_core']!r} is not a core number; re-create the bundle.")
        check_dla_core(profile, fields["dla_core"])
    if fields["precision"] == "int8" and fields["int8_path"] not in profile.int8_paths:
        raise CosineGateError(f"bundle int8_path {fields['int8_path']!r} is not one of {', '.join(profile.int8_paths)}; re-create the bundle.")
    return fields
