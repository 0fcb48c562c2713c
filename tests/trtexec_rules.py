"""What each release's trtexec accepts: its flag list (tests/data/trtexec_flags/, from sampleOptions.cpp and
trtexec.cpp at the release tag, scripts/trt_evidence.py) and the combinations its option parsing and
engine setup accept (rules below, each with the source it comes from)."""

import shlex
from pathlib import Path

from cosinegate.trtversion import parse_version

DATA = Path(__file__).parent / "data" / "trtexec_flags"
PRECISION_FLAGS = {"--fp16", "--int8", "--bf16", "--fp8", "--int4", "--best"}
PIN_FLAGS = {"--precisionConstraints", "--layerPrecisions", "--layerOutputTypes"}


def flag_list(release_file):
    return {line.strip() for line in (DATA / f"{release_file}.txt").read_text().splitlines()
            if line and not line.startswith("#")}


def accepted_flags(version):
    """Flags every trtexec the version (or family, like "10") may be: the intersection of the lists it spans.

    8.6.2 (JetPack 6.0) uses the v8.6.1 list (same 8.6 sources); any 10.x line must run on 10.3.0 and on
    10.16; 11.x uses v11.1, the newest tag (11.4's sources are not public at a tag)."""
    version = parse_version(version)
    if version.major == 8:
        files = ["8.5.2"] if version.minor == 5 else ["8.6.1"]
    elif version.major == 10:
        files = ["10.3.0"] if version.minor == 3 else ["10.16"] if version.minor >= 15 else ["10.3.0", "10.16"]
    elif version.major == 11:
        files = ["11.1"]
    else:
        raise AssertionError(f"no trtexec flag evidence for TensorRT {version}")
    return set.intersection(*(flag_list(f) for f in files))


def problems(args, version):
    """Why trtexec ``version`` would refuse (or silently ignore part of) ``args``; empty when it takes them."""
    version = parse_version(version)
    assert args[0] == "trtexec"
    flags = {}
    for arg in args[1:]:
        name, _, value = arg.partition("=")
        flags[name] = value
    found = [f"{name} is not a flag of trtexec {version}" for name in flags if name not in accepted_flags(version)]
    has = flags.__contains__
    strong = has("--stronglyTyped")
    if strong and PRECISION_FLAGS & set(flags):
        # 10.x sampleOptions.cpp: "Invalid usage, setting fp16 mode is not allowed if graph is strongly typed"
        found.append("--stronglyTyped with a precision flag")
    if version.major >= 11 and PRECISION_FLAGS & set(flags):
        # 11.x: no weakly typed builds; the --int8 literal of v11.1 belongs to the safety-runtime options
        found.append("a precision flag on TensorRT 11 (strongly typed only)")
    if strong and PIN_FLAGS & set(flags):
        found.append("--stronglyTyped with per-layer precision flags (strongly typed networks take precision from the graph)")
    if strong and has("--useDLACore") and version.major < 11:
        # sampleEngines.cpp setupNetworkAndConfig: DLA sets kFP16 unless --int8, refused on a strongly typed network
        found.append("--stronglyTyped with --useDLACore (trtexec sets FP16 for DLA)")
    if has("--onnx") and has("--useDLACore") and not ({"--fp16", "--int8"} & set(flags)) and version.major < 11:
        found.append("--useDLACore without --fp16/--int8 (DLA runs fp16 or int8)")
    if has("--calib") and not has("--int8"):
        found.append("--calib without --int8 (the cache would be ignored)")
    if (has("--layerPrecisions") or has("--layerOutputTypes")) and flags.get("--precisionConstraints") not in ("obey", "prefer"):
        found.append("--layerPrecisions/--layerOutputTypes without --precisionConstraints=obey|prefer (no effect)")
    if has("--precisionConstraints") and flags["--precisionConstraints"] not in ("obey", "prefer", "none"):
        found.append(f"unknown --precisionConstraints value {flags['--precisionConstraints']}")
    if has("--allowGPUFallback") and not has("--useDLACore"):
        found.append("--allowGPUFallback without --useDLACore")
    if has("--loadEngine") and (has("--onnx") or has("--saveEngine")):
        found.append("--loadEngine with --onnx/--saveEngine")
    if not has("--loadEngine") and not has("--onnx"):
        found.append("neither --onnx nor --loadEngine")
    if has("--exportLayerInfo") and flags.get("--profilingVerbosity") != "detailed" and version.at_least(8, 6):
        found.append("--exportLayerInfo without --profilingVerbosity=detailed (layer info would be names only)")
    if {"--shapes", "--minShapes", "--optShapes", "--maxShapes"} & set(flags):
        # the toolkit's graphs have static input shapes, and a static model refuses shape flags (sampleEngines.cpp
        # setupNetworkAndConfig: 8.5.2 l.764-770, v8.6.1 l.869-875, v10.3.0 l.839-845 "Static model does not take
        # explicit shapes ...", return false)
        found.append("shape flags for a static-shape graph")
    if has("--memPoolSize") and not flags["--memPoolSize"].startswith("workspace:"):
        found.append("--memPoolSize without a workspace: pool")
    for spec_flag in ("--layerPrecisions", "--layerOutputTypes"):
        for entry in flags.get(spec_flag, "").split(",") if has(spec_flag) else []:
            layer, _, precision = entry.rpartition(":")
            if not layer or precision not in ("fp32", "fp16", "int8", "int32", "bool"):
                found.append(f"{spec_flag} entry {entry!r} is not <layer>:<type>")
    return found


def script_builds(script):
    """{release: trtexec args} of each case branch of build_on_device.sh (its `set --` build line)."""
    builds, release = {}, None
    for line in script.splitlines():
        line = line.strip()
        if line.startswith("RELEASE="):
            release = shlex.split(line[len("RELEASE="):])[0]
        elif line.startswith("set -- --onnx=") and release:
            builds[release] = ["trtexec"] + shlex.split(line)[2:]
    return builds
