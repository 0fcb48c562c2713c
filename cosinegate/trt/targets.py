"""Target profiles: one TOML file per board in cosinegate/trt/profiles/ (the checkout's engines/targets/ is a link
to it; adding a target = adding a file there, or naming any profile file with --target PATH).

A profile states the board's CPU architecture, CUDA compute capabilities, DLA cores, the
TensorRT releases it runs (with the JetPack releases that ship them and the highest ONNX opset
each one's parser takes), default build settings and the tegrastats power rails.

Profiles are read with ``tomllib`` (Python 3.11+), else ``tomli`` (the same parser, pure Python: the
``device`` extra installs it on JetPack's Python 3.8/3.10), else ``cosinegate.minitoml`` (a strict
TOML subset reader, the last resort). Whatever the reader, a profile is refused in one line naming
the file and the field: unreadable bytes, nesting past 32 levels, a name that is not a plain name, a
number out of its range, a release listed twice.

A profile with ``runtime = "onnxruntime"`` (cpu-onnxruntime.toml) is no TensorRT board: it holds only name,
description, runtime and precisions (``load_ort_target``); ``list_targets`` and ``load_target`` keep to TensorRT
profiles unless asked, and cosinegate build-engine routes such a target to cosinegate.pipeline.ort_target.

TensorRT versions in a profile match by prefix: "8.5.2" covers 8.5.2.2, "10" covers every 10.x;
the longest matching entry wins.
"""

import os
import re
from dataclasses import dataclass
from pathlib import Path

from cosinegate.errors import CosineGateError
from cosinegate.minitoml import loads as minitoml_loads
from cosinegate.trtversion import parse_version

# package data (setup.cfg [options.package_data]), read on the board's Python 3.8 too: a path next to __file__
DEFAULT_TARGETS_DIR = Path(__file__).resolve().parent / "profiles"

try:
    import tomllib as _toml  # novermin - tomli below on older Pythons
except ImportError:  # Python < 3.11
    try:
        import tomli as _toml
    except ImportError:
        _toml = None

ARCHES = ("aarch64", "x86_64")
PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # a file name, never a path or `..`
RAIL_NAME = re.compile(r"[A-Za-z0-9_]{1,32}")  # tegrastats rail names: VDD_IN, VDD_GPU_SOC, VIN_SYS_5V0, GPU
MAX_WORKSPACE_MIB = 1 << 20  # 1 TiB
MAX_DEPTH = 32
MAX_PROFILE_BYTES = 1 << 20
PRECISIONS = ("fp32", "fp16", "int8")
INT8_PATHS = ("qdq", "cache")

_FIELDS = {
    "name": str,
    "description": str,
    "arch": str,
    "compute_capabilities": list,
    "dla_cores": int,
    "precisions": list,
    "int8_paths": list,
    "default_int8_path": str,
    "default_workspace_mib": int,
    "use_dla": bool,
    "gpu_fallback": bool,
    "if_on_dla": bool,
    "total_power_rails": list,
    "detail_power_rails": list,
    "tensorrt": list,
}
RUNTIMES = ("tensorrt", "onnxruntime")
_ORT_FIELDS = {"name": str, "description": str, "runtime": str, "precisions": list}
_RELEASE_FIELDS = {"version": str, "jetpack": list, "max_onnx_opset": int}


@dataclass(frozen=True)
class TensorRTRelease:
    """One TensorRT release a target runs; ``jetpack`` is empty off Jetson."""

    version: object  # TrtVersion
    jetpack: tuple
    max_onnx_opset: int


@dataclass(frozen=True)
class TargetProfile:
    name: str
    description: str
    arch: str
    compute_capabilities: tuple  # strings like "8.7"
    dla_cores: int
    precisions: tuple
    int8_paths: tuple
    default_int8_path: str
    default_workspace_mib: int
    use_dla: bool
    gpu_fallback: bool
    if_on_dla: bool  # whether conditional (If) layers can run on DLA; where not, a DLA build needs GPU fallback
    total_power_rails: tuple  # summed into one power figure (energy per image)
    detail_power_rails: tuple  # reported one by one
    tensorrt: tuple  # TensorRTRelease, oldest first
    source: Path

    @property
    def is_jetson(self):
        return any(release.jetpack for release in self.tensorrt)

    @property
    def newest_tensorrt(self):
        return self.tensorrt[-1].version

    def release_for(self, trt_version):
        """The TensorRTRelease covering ``trt_version``, or None when the target lists none."""
        version = parse_version(trt_version)
        matches = [r for r in self.tensorrt if version.starts_with(r.version)]
        return max(matches, key=lambda r: len(r.version.parts), default=None)

    def tensorrt_names(self):
        return ", ".join(str(r.version) for r in self.tensorrt)

    @property
    def power_rails(self):
        """The rails as an engine manifest records them (bench --power reads them there)."""
        return {"total": list(self.total_power_rails), "detail": list(self.detail_power_rails)}


@dataclass(frozen=True)
class HostInfo:
    """What a build machine is: CPU arch, GPU compute capability, TensorRT version (or None)."""

    arch: str
    compute_capability: str
    trt_version: object = None


def compute_capability_text(value):
    """Normalize 8.7, "8.7" or (8, 7) to "8.7"."""
    if isinstance(value, (tuple, list)):
        return ".".join(str(int(v)) for v in value)
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value).strip()


@dataclass(frozen=True)
class OrtTargetProfile:
    """A target run by ONNX Runtime on the machine that builds for it (``runtime = "onnxruntime"``)."""

    name: str
    description: str
    runtime: str
    precisions: tuple
    source: Path


def list_targets(targets_dir=None, runtime="tensorrt"):
    """Names of the targets of ``runtime`` (None: every runtime), one per *.toml file, sorted."""
    directory = Path(targets_dir) if targets_dir else DEFAULT_TARGETS_DIR
    return sorted(path.stem for path in directory.glob("*.toml") if runtime is None or _runtime_of(path) == runtime)


def _runtime_of(path):
    """The ``runtime`` a profile file names (tensorrt when absent or unreadable: load_target says what is wrong)."""
    try:
        value = read_profile_toml(path).get("runtime", "tensorrt")
    except CosineGateError:
        return "tensorrt"
    return value if value in RUNTIMES else "tensorrt"


def target_runtime(name, targets_dir=None):
    """"onnxruntime" when target ``name`` (a shipped name or a profile path) is an ONNX Runtime target, else "tensorrt"."""
    path = _profile_path(name, targets_dir)
    return _runtime_of(path) if path is not None and path.is_file() else "tensorrt"


def _split_target(name, directory, allow_path=True):
    """(folder, plain name) of a --target: NAME (in ``directory``), DIR/NAME for DIR/NAME.toml, or the profile file's
    own path (DIR/NAME.toml, or NAME.toml where that file exists)."""
    if not allow_path or not isinstance(name, str):
        return directory, name
    if name.endswith(".toml") and ("/" in name or os.sep in name or Path(name).is_file()):
        name = name[: -len(".toml")]
        if "/" not in name and os.sep not in name:
            name = os.path.join(".", name)
    if "/" in name or os.sep in name:
        return Path(name).parent, Path(name).name
    return directory, name


def _profile_path(name, targets_dir=None):
    directory, name = _split_target(name, Path(targets_dir) if targets_dir else DEFAULT_TARGETS_DIR)
    if not isinstance(name, str) or not PLAIN_NAME.fullmatch(name) or ".." in name:
        return None
    return directory / f"{name}.toml"


def load_ort_target(name, targets_dir=None):
    """Load and validate an ONNX Runtime target profile (name, description, runtime = "onnxruntime", precisions)."""
    path = _profile_path(name, targets_dir)
    if path is None or not path.is_file():
        raise CosineGateError(f"unknown target {name!r}; valid ONNX Runtime targets: "
                              f"{', '.join(list_targets(targets_dir, 'onnxruntime')) or 'none'}.")
    data = read_profile_toml(path)
    _check_fields(data, _ORT_FIELDS, path)
    if data["name"] != path.stem:
        _fail(path, "name", f"is {data['name']!r} but the file is {path.name}; make them agree")
    if data["runtime"] != "onnxruntime":
        _fail(path, "runtime", f"is {data['runtime']!r}, not \"onnxruntime\"")
    precisions = _strings(data, "precisions", path, ("fp32",))
    if not precisions:
        _fail(path, "precisions", 'must list "fp32"')
    return OrtTargetProfile(data["name"], data["description"], data["runtime"], precisions, path)


def load_target(name, targets_dir=None, allow_path=True):
    """Load and validate <targets_dir, default DEFAULT_TARGETS_DIR>/<name>.toml; with ``allow_path`` (a user's --target)
    NAME may be a profile file's path (DIR/NAME.toml, or DIR/NAME for it). The name itself is plain either way (a name
    from a file, e.g. an engine manifest, is never a path)."""
    given = name
    directory, name = _split_target(name, Path(targets_dir) if targets_dir else DEFAULT_TARGETS_DIR, allow_path)
    if not isinstance(name, str) or not PLAIN_NAME.fullmatch(name) or ".." in name:
        raise CosineGateError(f"target {name!r} is not a plain name (letters, digits, . _ -); "
                              f"valid targets: {', '.join(list_targets(directory)) or 'none'}.")
    path = directory / f"{name}.toml"
    if not path.is_file():
        if allow_path and ("/" in given or os.sep in given):  # a path the user typed (plain names fall through)
            raise CosineGateError(f"target profile {given if given.endswith('.toml') else path} is not a file; fix the "
                                  "path (a target is a shipped name such as jetson-orin, or the path of a profile file).")
        known = ", ".join(list_targets(directory)) or "none"
        if name.endswith(".toml"):
            raise CosineGateError(f"unknown target {name!r}: no such profile file here; a target is a name ({known}) "
                                  "or the path of a profile file.")
        ort = ", ".join(list_targets(directory, "onnxruntime"))
        raise CosineGateError(
            f"unknown target {name!r}; valid targets: {known}{f' (ONNX Runtime: {ort})' if ort else ''}. "
            + (f"Pick one of those, or write a profile (copy one of {directory}/*.toml, the shipped ones) and pass its "
               f"path: --target ./{path.name}." if directory == DEFAULT_TARGETS_DIR
               else f"Pick one of those or add {path.name} to {directory}.")
        )
    return _profile_from(read_profile_toml(path), path)


def read_profile_toml(path):
    """The TOML mapping of profile ``path``, or one CosineGateError line (bad bytes, syntax, depth, size)."""
    try:
        with open(path, "rb") as handle:  # at most the limit and one byte: a huge file is never read whole
            raw = handle.read(MAX_PROFILE_BYTES + 1)
        if len(raw) > MAX_PROFILE_BYTES:
            raise CosineGateError(f"{path}: over {MAX_PROFILE_BYTES} bytes, not a target profile; fix the file.")
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CosineGateError(f"{path}: not UTF-8 text (byte {exc.start}); save the profile as UTF-8.") from None
    except OSError as exc:
        raise CosineGateError(f"{path}: cannot read it ({exc.strerror}); check the file.") from None
    depth = _nesting(text)
    if depth > MAX_DEPTH:
        raise CosineGateError(f"{path}: brackets nested {depth} deep (at most {MAX_DEPTH}); not a target profile, fix the file.")
    try:
        if _toml is not None:
            return _toml.loads(text)
        return minitoml_loads(text)
    except (ValueError, RecursionError) as exc:  # TOMLDecodeError and minitoml's TOMLError are ValueErrors
        problem = str(exc).encode("unicode_escape").decode("ascii")[:200]
        raise CosineGateError(f"{path}: not valid profile TOML ({problem}); fix the file.") from None


def _nesting(text):
    """Deepest bracket nesting outside strings and comments (a cheap guard before a recursive parser)."""
    depth = deepest = 0
    quote = None
    for i, ch in enumerate(text):
        if quote:
            if ch == quote and (quote == "'" or text[i - 1] != "\\"):
                quote = None
            elif ch == "\n":
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth = max(0, depth - 1)
    return deepest


def _fail(path, field, problem):
    raise CosineGateError(f"{path}: field {field!r} {problem}; fix the file.")


def _check_fields(data, fields, path, where=""):
    for field, kind in fields.items():
        if field not in data:
            _fail(path, where + field, "is missing")
        value = data[field]
        wrong_type = not isinstance(value, kind) or (kind is int and isinstance(value, bool))
        if wrong_type:
            _fail(path, where + field, f"must be a {kind.__name__}, not {type(value).__name__}")
        if kind is str:
            _check_text(path, where + field, value)
    for field in data:
        if field not in fields:
            _fail(path, where + field, f"is not a known field (known: {', '.join(fields)})")


def _check_text(path, field, value):
    """Profile text reaches generated scripts, READMEs and file names: no control characters."""
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        _fail(path, field, f"holds a control character ({value!r})")


def _rails(data, field, path):
    rails = _strings(data, field, path)
    for rail in rails:
        if not RAIL_NAME.fullmatch(rail):
            _fail(path, field, f"has {rail!r}, not a tegrastats rail name (letters, digits and _, as tegrastats prints them)")
    return rails


def _strings(data, field, path, allowed=None, where=""):
    values = data[field]
    for value in values:
        if not isinstance(value, str):
            _fail(path, where + field, f"must hold strings, found {value!r}")
        _check_text(path, where + field, value)
        if allowed is not None and value not in allowed:
            _fail(path, where + field, f"has {value!r}; allowed: {', '.join(allowed)}")
    return tuple(values)


def _release_from(entry, index, path):
    where = f"tensorrt[{index}]."
    if not isinstance(entry, dict):
        _fail(path, f"tensorrt[{index}]", "must be a table ([[tensorrt]])")
    _check_fields(entry, _RELEASE_FIELDS, path, where)
    try:
        version = parse_version(entry["version"])
    except CosineGateError:
        _fail(path, where + "version", f"is {entry['version']!r}, not a version like 8.5.2")
    if not 7 <= entry["max_onnx_opset"] <= 99:
        _fail(path, where + "max_onnx_opset", f"is {entry['max_onnx_opset']}, not an ONNX opset number (7..99)")
    jetpack = _strings(entry, "jetpack", path, where=where)
    return TensorRTRelease(version, jetpack, entry["max_onnx_opset"])


def _profile_from(data, path):
    data = dict(data)
    runtime = data.pop("runtime", "tensorrt")
    if runtime != "tensorrt":
        if runtime == "onnxruntime":
            raise CosineGateError(f"target {path.stem} runs on ONNX Runtime, not TensorRT; use it with "
                                  f"cosinegate build-engine --target {path.stem}.")
        _fail(path, "runtime", f"is {runtime!r}; allowed: {', '.join(RUNTIMES)}")
    _check_fields(data, _FIELDS, path)
    if data["name"] != path.stem:
        _fail(path, "name", f"is {data['name']!r} but the file is {path.name}; make them agree")
    if not PLAIN_NAME.fullmatch(data["name"]) or ".." in data["name"]:
        _fail(path, "name", f"is {data['name']!r}, not a plain name (letters, digits, . _ -)")
    if data["arch"] not in ARCHES:
        _fail(path, "arch", f"is {data['arch']!r}; allowed: {', '.join(ARCHES)}")
    if data["dla_cores"] < 0:
        _fail(path, "dla_cores", "must be 0 or more")
    if not 0 < data["default_workspace_mib"] <= MAX_WORKSPACE_MIB:
        _fail(path, "default_workspace_mib", f"is {data['default_workspace_mib']}; give 1..{MAX_WORKSPACE_MIB} MiB")
    if not 0 <= data["dla_cores"] <= 16:
        _fail(path, "dla_cores", f"is {data['dla_cores']}; give 0..16")
    capabilities = _strings(data, "compute_capabilities", path)
    if not capabilities:
        _fail(path, "compute_capabilities", "must list at least one, like \"8.7\"")
    for capability in capabilities:  # matched against nvidia-smi's answer in build_on_device.sh
        if not re.fullmatch(r"[0-9]+\.[0-9]+", capability):
            _fail(path, "compute_capabilities", f"has {capability!r}, not a compute capability like \"8.7\"")
    precisions = _strings(data, "precisions", path, PRECISIONS)
    int8_paths = _strings(data, "int8_paths", path, INT8_PATHS)
    if data["default_int8_path"] not in int8_paths:
        _fail(path, "default_int8_path", f"is {data['default_int8_path']!r}, not in int8_paths")
    if data["use_dla"] and data["dla_cores"] == 0:
        _fail(path, "use_dla", "is true but dla_cores is 0")
    if data["dla_cores"] and not data["if_on_dla"] and not data["gpu_fallback"]:
        _fail(path, "gpu_fallback", "must be true: If layers cannot run on DLA (if_on_dla = false), so they need GPU fallback")
    if not data["tensorrt"]:
        _fail(path, "tensorrt", "must list at least one [[tensorrt]] release")
    releases = [_release_from(entry, i, path) for i, entry in enumerate(data["tensorrt"])]
    versions = [str(r.version) for r in releases]
    twice = sorted({v for v in versions if versions.count(v) > 1})
    if twice:
        _fail(path, "tensorrt", f"lists release {', '.join(twice)} more than once; keep one [[tensorrt]] per release")
    return TargetProfile(
        name=data["name"],
        description=data["description"],
        arch=data["arch"],
        compute_capabilities=capabilities,
        dla_cores=data["dla_cores"],
        precisions=precisions,
        int8_paths=int8_paths,
        default_int8_path=data["default_int8_path"],
        default_workspace_mib=data["default_workspace_mib"],
        use_dla=data["use_dla"],
        gpu_fallback=data["gpu_fallback"],
        if_on_dla=data["if_on_dla"],
        total_power_rails=_rails(data, "total_power_rails", path),
        detail_power_rails=_rails(data, "detail_power_rails", path),
        tensorrt=tuple(sorted(releases, key=lambda r: r.version)),
        source=path,
    )


def check_workspace(workspace_mib):
    """Raise unless ``workspace_mib`` is None or 1..MAX_WORKSPACE_MIB (a 31-digit pool size would reach the script)."""
    if workspace_mib is not None and not 0 < workspace_mib <= MAX_WORKSPACE_MIB:
        raise CosineGateError(f"--workspace {workspace_mib} MiB is out of range; give 1..{MAX_WORKSPACE_MIB} MiB.")


def check_dla_core(profile, dla_core):
    """Raise unless ``dla_core`` is None or a DLA core index the target has."""
    if dla_core is None:
        return
    if profile.dla_cores == 0:
        raise CosineGateError(
            f"target {profile.name} has no DLA; drop --dla-core to build for its GPU."
        )
    if not isinstance(dla_core, int) or isinstance(dla_core, bool) or not 0 <= dla_core < profile.dla_cores:
        raise CosineGateError(
            f"DLA core {dla_core!r} does not exist on {profile.name}; "
            f"use a core from 0 to {profile.dla_cores - 1}."
        )


def max_opset(profile, trt_version=None):
    """Highest ONNX opset the target's parser takes: for ``trt_version``, or for all its releases."""
    if trt_version is None:
        return min(release.max_onnx_opset for release in profile.tensorrt)
    release = profile.release_for(trt_version)
    if release is None:
        raise CosineGateError(
            f"TensorRT {trt_version} is not a release of target {profile.name} "
            f"(it has {profile.tensorrt_names()}); pick one of those or add it to {profile.source.name}."
        )
    return release.max_onnx_opset


def check_opset(profile, opset, trt_version=None):
    """Raise when ``opset`` is above what the parser of ``trt_version`` (default: every release) takes."""
    limit = max_opset(profile, trt_version)
    if opset > limit:
        which = f"TensorRT {trt_version}" if trt_version else f"every TensorRT release of {profile.name}"
        raise CosineGateError(
            f"ONNX opset {opset} is above what the parser of {which} takes ({limit}); "
            f"export with opset {limit} (or lower)."
        )


def host_matches(profile, host):
    """Can ``host`` build engines for ``profile``? Returns (bool, reason)."""
    if host.arch != profile.arch:
        return False, f"host is {host.arch}, target {profile.name} is {profile.arch}"
    if host.compute_capability is None:
        return False, (f"this GPU's compute capability is unknown (no pycuda, torch, nvidia-smi or Jetson device tree "
                       f"here; target {profile.name} takes {', '.join(profile.compute_capabilities)}): pip3 install "
                       "pycuda, or set CC=X.Y")
    capability = compute_capability_text(host.compute_capability)
    if capability not in profile.compute_capabilities:
        return False, (
            f"host GPU has compute capability {capability}, target {profile.name} takes "
            f"{', '.join(profile.compute_capabilities)}"
        )
    if host.trt_version is None:
        return True, f"arch and compute capability match {profile.name}; TensorRT version unknown"
    release = profile.release_for(host.trt_version)
    if release is None:
        return False, (
            f"host has TensorRT {host.trt_version}, target {profile.name} runs {profile.tensorrt_names()}"
        )
    return True, f"host matches {profile.name} (TensorRT {release.version})"
