"""Manifests of engines and bundles: file hashes, engine compatibility.

- A bundle's ``manifest.json`` holds the sha256 of every other file in the bundle;
  ``verify_bundle`` refuses a bundle with a missing, altered or unlisted-but-required file.
- An engine's ``<engine>.json`` records the TensorRT version and compute capability it was built
  for; ``check_engine_manifest`` refuses an engine handed to another TensorRT or GPU.
"""

from pathlib import Path

from cosinegate.artifacts import atomic_write_json, read_json, sha256_file
from cosinegate.errors import CosineGateError

BUNDLE_FORMAT = "cosinegate-bundle-v1"
ENGINE_FORMAT = "cosinegate-engine-v1"
BUNDLE_MANIFEST = "manifest.json"


def file_hashes(directory, exclude=(BUNDLE_MANIFEST,)):
    """{relative posix path: sha256} of every regular file under ``directory``."""
    directory = Path(directory)
    out = {}
    for path in sorted(directory.rglob("*")):
        rel = path.relative_to(directory).as_posix()
        if path.is_file() and rel not in exclude:
            out[rel] = sha256_file(path)
    return out


def write_bundle_manifest(directory, **fields):
    manifest = {"format": BUNDLE_FORMAT, **fields, "files": file_hashes(directory)}
    atomic_write_json(Path(directory) / BUNDLE_MANIFEST, manifest)
    return manifest


def verify_bundle(directory):
    """Load a bundle's manifest and check every listed file's sha256; return the manifest."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CosineGateError(f"bundle {directory} is not a directory; pass the unpacked <model>-bundle folder.")
    manifest = read_json(directory / BUNDLE_MANIFEST, "bundle manifest")
    if manifest.get("format") != BUNDLE_FORMAT or not isinstance(manifest.get("files"), dict):
        raise CosineGateError(f"{directory / BUNDLE_MANIFEST} is not a CosineGate bundle manifest; re-create the bundle.")
    missing, altered = [], []
    for rel, digest in sorted(manifest["files"].items()):
        path = directory / rel
        if not path.is_file():
            missing.append(rel)
        elif sha256_file(path) != digest:
            altered.append(rel)
    if missing or altered:
        parts = []
        if missing:
            parts.append("missing: " + ", ".join(missing))
        if altered:
            parts.append("hash mismatch: " + ", ".join(altered))
        raise CosineGateError(f"bundle {directory} is damaged ({'; '.join(parts)}); copy it again or re-create it.")
    return manifest


def engine_manifest_path(engine):
    return Path(f"{engine}.json")


def write_engine_manifest(engine, **fields):
    manifest = {"format": ENGINE_FORMAT, "engine_sha256": sha256_file(engine), **fields}
    atomic_write_json(engine_manifest_path(engine), manifest)
    return manifest


def read_engine_manifest(engine):
    path = engine_manifest_path(engine)
    if not path.is_file():
        raise CosineGateError(
            f"engine {engine} has no manifest {path.name}; engines are tied to the TensorRT version and GPU they were "
            "built on, so only engines built by deploy/build_engine.py (which writes it) are accepted."
        )
    manifest = read_json(path, "engine manifest")
    if manifest.get("format") != ENGINE_FORMAT:
        raise CosineGateError(f"{path} is not a CosineGate engine manifest; rebuild the engine with deploy/build_engine.py.")
    return manifest


def check_engine_manifest(engine, trt_version, compute_capability, check_hash=True):
    """Refuse an engine built for another TensorRT version or compute capability; return its manifest."""
    from cosinegate.trt.targets import compute_capability_text
    from cosinegate.trt.versions import parse_version

    manifest = read_engine_manifest(engine)
    built_trt = parse_version(manifest["trt_version"])
    here = parse_version(trt_version)
    if built_trt.parts[:3] != here.parts[:3]:
        raise CosineGateError(
            f"engine {Path(engine).name} was built with TensorRT {built_trt}, this machine has TensorRT {here}; "
            "engines do not move between TensorRT versions: rebuild it here with deploy/build_engine.py."
        )
    built_cc, cc = str(manifest["compute_capability"]), compute_capability_text(compute_capability)
    if built_cc != cc:
        raise CosineGateError(
            f"engine {Path(engine).name} was built for compute capability {built_cc}, this GPU is {cc}; "
            "rebuild it on this device with deploy/build_engine.py."
        )
    if check_hash and manifest.get("engine_sha256") != sha256_file(engine):
        raise CosineGateError(f"engine {engine} does not match the hash in its manifest; rebuild it.")
    return manifest
