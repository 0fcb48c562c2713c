"""Manifests of engines and bundles on disk (records: cosinegate.manifests): file hashes, engine compatibility.

- A bundle's ``manifest.json`` holds the sha256 of every other file in the bundle;
  ``verify_bundle`` refuses a bundle with a missing, altered or unlisted-but-required file.
- An engine's ``<engine>.json`` records the TensorRT version and compute capability it was built
  for; ``check_engine_manifest`` refuses an engine handed to another TensorRT or GPU.
"""

import json
import os
import re
import stat
from pathlib import Path, PurePosixPath

from dataclasses import replace

from cosinegate.artifacts import atomic_write_json, check_input_file, read_json, sha256_file
from cosinegate.errors import CosineGateError
from cosinegate.manifests import BundleManifest, EngineManifest, engine_manifest_path

BUNDLE_MANIFEST = "manifest.json"
SAFE_PART = re.compile(r"[A-Za-z0-9_+-][A-Za-z0-9._+-]{0,127}")  # a file or folder name a bundle may hold


def file_hashes(directory, exclude=(BUNDLE_MANIFEST,)):
    """{relative posix path: sha256} of every regular file under ``directory``."""
    directory = Path(directory)
    out = {}
    for path in sorted(directory.rglob("*")):
        rel = path.relative_to(directory).as_posix()
        if path.is_file() and rel not in exclude:
            out[rel] = sha256_file(path)
    return out


def write_bundle_manifest(directory, manifest):
    """Write ``manifest`` (a BundleManifest) with the hashes of the files in ``directory``; return what was written."""
    manifest = replace(manifest, files=file_hashes(directory))
    atomic_write_json(Path(directory) / BUNDLE_MANIFEST, manifest.to_json())
    return manifest


def safe_name(value, what):
    """`value` if it is one plain name (letters, digits, . _ + -; no path, no control or shell characters)."""
    if not isinstance(value, str) or not SAFE_PART.fullmatch(value) or ".." in value:
        raise CosineGateError(f"{what} {value!r} is not a plain name (letters, digits, '.', '_', '+', '-'); "
                              "re-create the bundle with cosinegate build-engine.")
    return value


def bundle_member(directory, rel, what="bundle file"):
    """``directory/rel`` if ``rel`` names a regular file inside the bundle: a relative path of plain names,
    no symlink on the way. Raises CosineGateError otherwise (``FileNotFoundError`` if it is just missing)."""
    parts = PurePosixPath(rel).parts if isinstance(rel, str) else ()
    if not parts or "\\" in rel or rel.startswith("/") or any(part in (".", "..") or not SAFE_PART.fullmatch(part) for part in parts):
        raise CosineGateError(f"{what} {rel!r} in the bundle manifest is not a relative path inside the bundle "
                              "(no '..', absolute paths or odd characters); the bundle is refused: re-create it.")
    path = Path(directory)
    for index, part in enumerate(parts):
        path = path / part
        mode = os.lstat(path).st_mode
        if stat.S_ISLNK(mode):
            raise CosineGateError(f"{what} {rel!r} is or passes through a symlink ({path}); a bundle holds plain files "
                                  "only: copy it with the files themselves (cp -rL, tar without -h) or re-create it.")
        if index < len(parts) - 1 and not stat.S_ISDIR(mode):
            raise FileNotFoundError(path)
    if not stat.S_ISREG(mode):
        raise CosineGateError(f"{what} {rel!r} is not a regular file; re-create the bundle.")
    return path


def verify_bundle(directory):
    """Load a bundle's manifest and check every listed file's sha256; return the BundleManifest.

    Every listed name must be a plain file inside the bundle (see ``bundle_member``).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise CosineGateError(f"bundle {directory} is not a directory; pass the unpacked <model>-bundle folder.")
    if (directory / BUNDLE_MANIFEST).is_symlink():
        raise CosineGateError(f"{directory / BUNDLE_MANIFEST} is a symlink; a bundle holds plain files only: re-create it.")
    data = read_json(directory / BUNDLE_MANIFEST, "bundle manifest")
    manifest = BundleManifest.from_json(data, directory / BUNDLE_MANIFEST)
    if not isinstance(data.get("files"), dict):
        raise CosineGateError(f"{directory / BUNDLE_MANIFEST} is not a CosineGate bundle manifest; re-create the bundle.")
    missing, altered = [], []
    for rel, digest in sorted(manifest.files.items()):
        try:
            path = bundle_member(directory, rel)
        except FileNotFoundError:
            missing.append(rel)
            continue
        if sha256_file(path) != digest:
            altered.append(rel)
    if missing or altered:
        parts = []
        if missing:
            parts.append("missing: " + ", ".join(missing))
        if altered:
            parts.append("hash mismatch: " + ", ".join(altered))
        raise CosineGateError(f"bundle {directory} is damaged ({'; '.join(parts)}); copy it again or re-create it.")
    for field, rel in named_graphs(manifest):
        if not (isinstance(rel, str) and rel.endswith(".onnx")):
            raise CosineGateError(f"the bundle manifest's {field} {rel!r} is not an .onnx file; re-create the bundle.")
    for rel in manifest.files:
        if rel.endswith(".onnx"):  # every graph the manifest names, checked above
            _check_external_data(directory, rel, manifest.files)
    return manifest


def named_graphs(manifest):
    """(field, name) of every graph a bundle manifest names for a build: build_onnx, float_onnx, candidates' onnx."""
    named = [("build_onnx", manifest.build_onnx), ("float_onnx", manifest.float_onnx)]
    candidates = manifest.candidates if isinstance(manifest.candidates, dict) else {}
    named += [(f"candidates.{name}.onnx", files.get("onnx")) for name, files in candidates.items() if isinstance(files, dict)]
    return [(field, rel) for field, rel in named if rel is not None]


def _check_external_data(directory, rel, files):
    """A bundled graph may keep weights in external files only if they are hashed files of the bundle beside it
    (a graph whose bytes never say ``location`` names no external file and is not parsed here)."""
    import posixpath

    if b"location" not in (directory / rel).read_bytes():
        return
    try:
        import onnx

        model = onnx.load(str(directory / rel), load_external_data=False)
    except ImportError:
        raise CosineGateError(f"bundle graph {rel} may read external data and onnx is not installed to check it; "
                              "pip install onnx.") from None
    except Exception as exc:  # noqa: BLE001 - protobuf raises several types
        raise CosineGateError(f"bundle graph {rel} is not a readable ONNX file ({type(exc).__name__}); re-create the bundle.") from None
    from cosinegate.graphmeta import all_tensors

    for tensor in all_tensors(model):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = {e.key: e.value for e in tensor.external_data}.get("location", "")
        member = posixpath.normpath(posixpath.join(posixpath.dirname(rel), location))
        if not location or location.startswith("/") or ".." in location.split("/") or member not in files:
            raise CosineGateError(f"bundle graph {rel} reads external data {location!r}, which is not one of the bundle's "
                                  "hashed files beside it; a bundle reads only its own files: re-create it.")



def listed_member(directory, manifest, rel, field):
    """The bundle file ``rel`` a manifest ``field`` names (e.g. build_onnx), which must be one of its hashed files;
    None if unset."""
    if rel is None:
        return None
    if not isinstance(rel, str) or rel not in manifest.files:
        raise CosineGateError(f"the bundle manifest's {field} {rel!r} is not one of its hashed files; re-create the bundle.")
    return bundle_member(directory, rel, field)


def write_engine_manifest(engine, manifest):
    """Write ``manifest`` (an EngineManifest) with the engine's sha256 beside ``engine``; return what was written."""
    manifest = replace(manifest, engine_sha256=sha256_file(engine))
    atomic_write_json(engine_manifest_path(engine), manifest.to_json())
    return manifest


def read_engine_manifest(engine):
    """The EngineManifest beside ``engine``, its versions checked."""
    path = engine_manifest_path(engine)
    check_input_file(engine, "engine")
    if not path.is_file():
        raise CosineGateError(
            f"engine {engine} has no manifest {path.name}; engines are tied to the TensorRT version and GPU they were "
            "built on, so only engines built by cosinegate build-engine (which writes it) are accepted."
        )
    manifest = EngineManifest.from_json(read_json(path, "engine manifest"), path)
    for field in ("trt_version", "compute_capability"):
        value = getattr(manifest, field)
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise CosineGateError(f"{path}: {field} = {str(value)[:40]!r} is not a version; rebuild the engine.")
    return manifest


def engine_power_rails(manifest, where):
    """(rails summed, rails reported one by one) for bench --power on an engine: those its manifest records (the
    profile it was built for, a local file included); for an engine built before they were recorded, the shipped
    profile's of its target. One line where there are none to sum or the record is not rail names."""
    from cosinegate.trt.targets import RAIL_NAME, list_targets, load_target

    rails = manifest.power_rails
    if rails is None:
        if manifest.target not in list_targets():
            raise CosineGateError(f"{where} records no power rails and its target {str(manifest.target)[:40]!r} is not a "
                                  "shipped profile; rebuild the engine (its manifest then records the profile's rails).")
        profile = load_target(manifest.target, allow_path=False)
        rails = profile.power_rails
    elif not isinstance(rails, dict) or not all(
            isinstance(rails.get(key), list) and all(isinstance(r, str) and RAIL_NAME.fullmatch(r) for r in rails[key])
            for key in ("total", "detail")):
        raise CosineGateError(f"{where}: power_rails = {json.dumps(rails)[:60]} is not lists of tegrastats rail names "
                              "under \"total\" and \"detail\"; rebuild the engine.")
    if not rails["total"]:
        raise CosineGateError(f"the target profile of {where} ({str(manifest.target)[:40]!r}) names no power rails to sum "
                              "(total_power_rails); --power needs a Jetson profile with tegrastats rails.")
    return tuple(rails["total"]), tuple(rails["detail"])


def check_engine_manifest(engine, trt_version, compute_capability):
    """Refuse an engine built for another TensorRT version or compute capability; return its EngineManifest."""
    from cosinegate.trt.targets import compute_capability_text
    from cosinegate.trtversion import parse_version

    manifest = read_engine_manifest(engine)
    built_trt = parse_version(manifest.trt_version)
    here = parse_version(trt_version)
    if not built_trt.same_release(here):
        raise CosineGateError(
            f"engine {Path(engine).name} was built with TensorRT {built_trt}, this machine has TensorRT {here}; "
            "engines do not move between TensorRT versions: rebuild it here with cosinegate build-engine."
        )
    built_cc, cc = str(manifest.compute_capability), compute_capability_text(compute_capability)
    if compute_capability is None:
        raise CosineGateError(
            f"engine {Path(engine).name} was built for compute capability {built_cc}, and this GPU's is unknown (no "
            "pycuda, torch, nvidia-smi or Jetson device tree here): pip3 install pycuda, or set CC=X.Y."
        )
    if built_cc != cc:
        raise CosineGateError(
            f"engine {Path(engine).name} was built for compute capability {built_cc}, this GPU is {cc}; "
            "rebuild it on this device with cosinegate build-engine."
        )
    if manifest.engine_sha256 != sha256_file(engine):
        raise CosineGateError(f"engine {engine} does not match the hash in its manifest; rebuild it.")
    return manifest
