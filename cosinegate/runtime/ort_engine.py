"""An ONNX Runtime-native graph as an engine: tied to the ONNX Runtime version and the CPU that optimized it.

``cpu_identity()`` names this CPU (``platform.machine()``, the model string of /proc/cpuinfo and the vector
extensions the kernels pick from: AVX-512, AVX2, NEON); ``check_ort_engine(path)`` reads the manifest beside a
graph built for the cpu-onnxruntime target (``<graph>.json``, a cosinegate.manifests.OrtEngineManifest: data,
never code), checks the graph's hash and refuses, in one line naming the rebuild, another ONNX Runtime version
or another CPU; ``check_if_ort_engine(path)`` does that where a graph has such a manifest (every reader of a graph).
"""

import platform
from pathlib import Path

from cosinegate.artifacts import read_json, sha256_file
from cosinegate.errors import CosineGateError
from cosinegate.manifests import ORT_ENGINE_FORMAT, OrtEngineManifest

TARGET = "cpu-onnxruntime"
REBUILD = f"rebuild it on this machine with cosinegate build-engine --target {TARGET} --checkpoint CKPT"
_ISA = (("avx512", ("avx512f",)), ("avx2", ("avx2",)), ("neon", ("neon", "asimd")))


def cpu_identity(cpuinfo="/proc/cpuinfo"):
    """{"machine", "model", "isa": [sorted extensions]} of this CPU (model "unknown" where /proc/cpuinfo is not)."""
    model, flags = "", set()
    try:
        text = Path(cpuinfo).read_text(errors="replace")[:1 << 20]
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and not model:
            model = value.strip()
        elif key in ("flags", "features"):
            flags.update(value.split())
    if not model and text:  # ARM kernels name no model: the implementer and part numbers say which core
        parts = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in text.splitlines()) if v}
        model = " ".join(f"{k}={parts[k]}" for k in ("cpu implementer", "cpu part") if k in parts)
    isa = sorted(name for name, keys in _ISA if flags & set(keys))
    return {"machine": platform.machine(), "model": " ".join(model.split())[:200] or "unknown", "isa": isa}


def onnxruntime_version():
    import onnxruntime

    return onnxruntime.__version__


def manifest_path(graph):
    return Path(f"{graph}.json")


def read_ort_manifest(graph):
    """The OrtEngineManifest beside ``graph``; one line when it is missing or not one."""
    path = manifest_path(graph)
    if not path.is_file():
        raise CosineGateError(f"{graph} has no manifest {path.name}; a {TARGET} graph runs only with the manifest "
                              f"build-engine wrote beside it: {REBUILD}.")
    return OrtEngineManifest.from_json(read_json(path, "ONNX Runtime engine manifest"), path)


def host_mismatch(manifest, version=None, cpu=None):
    """Why this machine may not run the graph of ``manifest`` (another ONNX Runtime or CPU), or None."""
    version = onnxruntime_version() if version is None else version
    cpu = cpu_identity() if cpu is None else cpu
    built = manifest.cpu if isinstance(manifest.cpu, dict) else {}
    if str(manifest.onnxruntime_version) != str(version):
        return f"built by ONNX Runtime {str(manifest.onnxruntime_version)[:40]}, this is ONNX Runtime {version}"
    for key in ("machine", "model", "isa"):
        if built.get(key) != cpu.get(key):
            return f"built on CPU {str(built.get(key))[:80]!s} ({key}), this CPU is {str(cpu.get(key))[:80]}"
    return None


def check_ort_engine(graph, version=None, cpu=None):
    """The manifest of the cpu-onnxruntime graph ``graph``, checked: hash, ONNX Runtime version, CPU."""
    manifest = read_ort_manifest(graph)
    if manifest.engine_sha256 != sha256_file(graph):
        raise CosineGateError(f"{graph} does not match the hash in {manifest_path(graph).name} (changed since it was "
                              f"built); {REBUILD}.")
    why = host_mismatch(manifest, version, cpu)
    if why:
        raise CosineGateError(f"{graph} cannot run here: {why}; {REBUILD}.")
    return manifest


def is_ort_engine(graph):
    """Whether a manifest beside ``graph`` says it was built for the cpu-onnxruntime target."""
    path = manifest_path(graph)
    if not path.is_file():
        return False
    try:
        return read_json(path, "manifest").get("format") == ORT_ENGINE_FORMAT
    except CosineGateError:
        return False


def check_if_ort_engine(graph):
    """``check_ort_engine(graph)`` where ``graph`` was built for the cpu-onnxruntime target (its manifest or None):
    such a graph runs only under its ONNX Runtime and CPU, a plain toolkit graph anywhere."""
    return check_ort_engine(graph) if is_ort_engine(graph) else None
