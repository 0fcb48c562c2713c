"""The trtexec command line equivalent to an engine build, for logs, manifests and manual rebuilds.

Flag conventions followed (trtexec help text of TensorRT 8.5 to 10.x):

- ``--memPoolSize=workspace:N`` with N in MiB and no suffix: 8.4-8.6 read a bare number as MiB,
  10.x accepts B/K/M/G suffixes and also defaults to MiB, so the bare form works on both.
- ``--stronglyTyped`` (TensorRT 9+) builds a Q/DQ graph with the precisions written in the graph;
  trtexec 8.5/8.6 lacks it, so a Q/DQ build there is ``--int8 --fp16``.
- ``--calib=<cache>`` feeds a calibration cache to the implicit-quantization (weakly typed) path.
- ``--precisionConstraints=obey --layerPrecisions=<l>:fp32,... --layerOutputTypes=...`` pins
  layers (the gate heads) to fp32 in weakly typed fp16/int8 builds; strongly typed builds take
  precision from the graph and reject these flags, so they are left out there.
- ``--useDLACore=N --allowGPUFallback``; DLA runs fp16 or int8 only.
- TensorRT 11 builds strongly typed only (see versions.py): no ``--fp16``/``--int8``/``--calib``.
"""

import shlex

from cosinegate.errors import CosineGateError
from cosinegate.trt.targets import check_dla_core
from cosinegate.trt.versions import parse_version


def trtexec_command(
    profile,
    onnx_path,
    engine_path,
    precision,
    int8_path=None,
    calib_cache=None,
    dla_core=None,
    workspace_mib=None,
    timing_cache=None,
    trt_version=None,
    batch=1,
    fp32_layers=(),
    skip_inference=False,
    input_spec=None,
):
    """Argument list for trtexec building ``onnx_path`` into ``engine_path`` for ``profile``.

    ``trt_version`` defaults to the target's newest TensorRT; ``int8_path`` to the target's
    default. ``input_spec`` is (input name, dims without batch), needed when ``batch`` is not 1
    (dynamic-batch ONNX): all three shape profiles are set to that batch.
    """
    version = parse_version(trt_version) if trt_version is not None else profile.newest_tensorrt
    if profile.release_for(version) is None:
        raise CosineGateError(
            f"TensorRT {version} is not a release of target {profile.name} "
            f"(it has {profile.tensorrt_names()}); pass one of those."
        )
    if precision not in profile.precisions:
        raise CosineGateError(
            f"precision {precision!r} is not offered by {profile.name}; use one of "
            f"{', '.join(profile.precisions)}."
        )
    if dla_core is None and profile.use_dla:
        dla_core = 0
    args = ["trtexec", f"--onnx={onnx_path}", f"--saveEngine={engine_path}"]
    args += _precision_args(profile, version, precision, int8_path, calib_cache, fp32_layers)
    args += _dla_args(profile, precision, dla_core)
    args.append(f"--memPoolSize=workspace:{_workspace(profile, workspace_mib)}")
    if timing_cache is not None:
        args.append(f"--timingCacheFile={timing_cache}")
    args += _shape_args(batch, input_spec)
    if skip_inference:
        args.append(version.skip_inference_flag)
    return args


def shell_line(args):
    """One shell-quoted line for ``args``."""
    return shlex.join(str(arg) for arg in args)


def _precision_args(profile, version, precision, int8_path, calib_cache, fp32_layers):
    if precision == "int8":
        int8_path = int8_path or profile.default_int8_path
        if int8_path not in profile.int8_paths:
            raise CosineGateError(
                f"INT8 path {int8_path!r} is not offered by {profile.name}; use one of "
                f"{', '.join(profile.int8_paths)}."
            )
    if version.requires_strongly_typed:
        return _strongly_typed_only(version, precision, int8_path)
    if precision == "fp32":
        return []
    if precision == "fp16":
        return ["--fp16"] + _fp32_pins(fp32_layers)
    if int8_path == "qdq":
        if version.supports_strongly_typed:
            return ["--stronglyTyped"]
        return ["--int8", "--fp16"] + _fp32_pins(fp32_layers)
    if calib_cache is None:
        raise CosineGateError(
            "the INT8 cache path needs a calibration cache; pass calib_cache "
            "(run calibration first) or use the qdq INT8 path."
        )
    return ["--int8", "--fp16", f"--calib={calib_cache}"] + _fp32_pins(fp32_layers)


def _strongly_typed_only(version, precision, int8_path):
    if precision == "fp16":
        raise CosineGateError(
            f"TensorRT {version} builds strongly typed only, so --fp16 is gone; convert the "
            "ONNX to fp16 (keeping the gate heads fp32) and build it as fp32."
        )
    if precision == "int8" and int8_path == "cache":
        raise CosineGateError(
            f"TensorRT {version} removed calibration caches (implicit quantization); "
            "use the qdq INT8 path."
        )
    return ["--stronglyTyped"]


def _fp32_pins(fp32_layers):
    if not fp32_layers:
        return []
    for layer in fp32_layers:
        if not layer or "," in layer or ":" in layer:
            raise CosineGateError(
                f"layer name {layer!r} cannot be pinned with trtexec (empty, or holds ',' or ':'); "
                "rename the ONNX node or pin it through the builder API."
            )
    spec = ",".join(f"{layer}:fp32" for layer in fp32_layers)
    return ["--precisionConstraints=obey", f"--layerPrecisions={spec}", f"--layerOutputTypes={spec}"]


def _dla_args(profile, precision, dla_core):
    if dla_core is None:
        return []
    check_dla_core(profile, dla_core)
    if precision == "fp32":
        raise CosineGateError("DLA runs fp16 or int8 only; build fp16 or int8, or drop --dla-core.")
    return [f"--useDLACore={dla_core}"] + (["--allowGPUFallback"] if profile.gpu_fallback else [])


def _workspace(profile, workspace_mib):
    workspace = profile.default_workspace_mib if workspace_mib is None else workspace_mib
    if not isinstance(workspace, int) or isinstance(workspace, bool) or workspace <= 0:
        raise CosineGateError(f"workspace {workspace!r} MiB is not a positive whole number; give MiB like 1024.")
    return workspace


def _shape_args(batch, input_spec):
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        raise CosineGateError(f"batch {batch!r} is not a positive whole number; use 1 or more.")
    if input_spec is None:
        if batch != 1:
            raise CosineGateError(
                f"batch {batch} needs the input name and dims (input_spec) to set trtexec shapes; "
                "pass them, or export the ONNX with that static batch."
            )
        return []
    name, dims = input_spec
    shape = f"{name}:" + "x".join(str(d) for d in (batch, *dims))
    return [f"--minShapes={shape}", f"--optShapes={shape}", f"--maxShapes={shape}"]
