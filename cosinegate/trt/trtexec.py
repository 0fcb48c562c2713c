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
- ``--useDLACore=N --allowGPUFallback``; DLA runs fp16 or int8 only. INT8 on DLA
  (``TrtVersion.dla_int8_path``): the calibration cache on 8.x (DLA takes no Q/DQ there); on 10.x
  the Q/DQ graph weakly typed (``--int8 --fp16``), because trtexec sets kFP16 for DLA unless
  ``--int8`` is on, and a ``--stronglyTyped`` network refuses that (sampleEngines.cpp, v10.3.0).
- Gate-head pins list float layers only (``cosinegate.trt.build.gate_layer_names``): TensorRT
  refuses a float precision on a layer that takes or makes bool.
- Timing (``trtexec_timing_command``): ``--loadEngine``, ``--loadInputs``, ``--useSpinWait``,
  ``--exportTimes``/``--exportProfile``/``--exportLayerInfo`` with ``--separateProfileRun``.

Every line is checked against the flag list of each release's trtexec (tests/trt/test_trtexec_flags.py).
- TensorRT 11 builds strongly typed only (see trtversion.py): no ``--fp16``/``--int8``/``--calib``.
"""

from cosinegate.errors import CosineGateError
from cosinegate.layernames import layer_name_problem
from cosinegate.trt.precision import precision_plan
from cosinegate.trt.targets import check_dla_core
from cosinegate.trtversion import parse_version


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
    fp32_layers=(),
    skip_inference=False,
    verbose=False,
    detailed_profile=False,
    calibrator=None,
):
    """Argument list for trtexec building ``onnx_path`` into ``engine_path`` for ``profile``.

    ``trt_version`` defaults to the target's newest TensorRT; ``int8_path`` to the target's
    default. No shape flags: the toolkit's graphs carry their batch in a static input shape, and trtexec refuses
    --shapes/--minShapes/--optShapes/--maxShapes for a static model (sampleEngines.cpp setupNetworkAndConfig,
    8.5.2 l.764-770, v10.3.0 l.839-845: "Static model does not take explicit shapes"). ``verbose`` adds
    ``--verbose`` (the build log); ``detailed_profile`` ``--profilingVerbosity=detailed`` (layer
    information for ``--exportLayerInfo`` when timing); ``calibrator`` the cache's ("entropy2" | "minmax"). TF32 is off (``--noTF32``), as in Polygraphy's builds.
    """
    version = parse_version(trt_version) if trt_version is not None else profile.newest_tensorrt
    if profile.release_for(version) is None:
        raise CosineGateError(
            f"TensorRT {version} is not a release of target {profile.name} "
            f"(it has {profile.tensorrt_names()}); pass one of those."
        )
    plan = precision_plan(profile, version, precision, int8_path, dla_core, calibrator)
    args = ["trtexec", f"--onnx={onnx_path}", f"--saveEngine={engine_path}"]
    args += _precision_args(plan, calib_cache, fp32_layers)
    if plan.dla_core is not None:
        args += [f"--useDLACore={plan.dla_core}"] + (["--allowGPUFallback"] if plan.gpu_fallback else [])
    # trtexec enables TF32 unless told (sampleOptions.cpp 8.5.2 l.843 "--noTF32 ... default is to enable tf32";
    # sampleEngines.cpp l.811-814): on Orin the fp32 engine and the FP32-pinned gate heads would run TF32 math.
    # Polygraphy's CreateConfig, the Python build path, leaves TF32 off.
    args.append("--noTF32")
    args.append(f"--memPoolSize=workspace:{_workspace(profile, workspace_mib)}")
    if timing_cache is not None:
        args.append(f"--timingCacheFile={timing_cache}")
    if skip_inference:
        args.append(version.skip_inference_flag)
    if detailed_profile:
        args.append("--profilingVerbosity=detailed")
    if verbose:
        args.append("--verbose")
    return args


def trtexec_timing_command(profile, engine_path, trt_version, inputs=None, export_prefix=None, dla_core=None):
    """trtexec line timing a built engine: ``--loadEngine``, real inputs (``inputs`` = {name: .bin file},
    passed as ``--loadInputs``), ``--useSpinWait``, and with ``export_prefix`` the per-run times, the
    per-layer profile and the layer information as JSON (``<prefix>.times.json`` etc.)."""
    parse_version(trt_version)  # same flags from 8.5 to 11.x (tests/trt/test_trtexec_flags.py)
    args = ["trtexec", f"--loadEngine={engine_path}", "--useSpinWait"]
    if inputs:
        args.append("--loadInputs=" + ",".join(f"{name}:{path}" for name, path in inputs.items()))
    if dla_core is not None:
        check_dla_core(profile, dla_core)
        args.append(f"--useDLACore={dla_core}")
    if export_prefix is not None:
        args += [f"--exportTimes={export_prefix}.times.json", f"--exportProfile={export_prefix}.profile.json",
                 f"--exportLayerInfo={export_prefix}.layers.json", "--separateProfileRun", "--profilingVerbosity=detailed"]
    return args


def _precision_args(plan, calib_cache, fp32_layers):
    """trtexec's precision flags of a PrecisionPlan."""
    if plan.strongly_typed:
        return ["--stronglyTyped"]
    args = (["--int8"] if plan.int8 else []) + (["--fp16"] if plan.fp16 else [])
    if plan.uses_cache:
        if calib_cache is None:
            raise CosineGateError("the INT8 cache path needs a calibration cache; pass calib_cache (run calibration "
                                  "first) or use the qdq INT8 path.")
        args.append(f"--calib={calib_cache}")
    return args + (_fp32_pins(fp32_layers) if plan.pins_layers else [])


def _fp32_pins(fp32_layers):
    if not fp32_layers:
        return []
    for layer in fp32_layers:
        problem = layer_name_problem(layer)
        if problem:
            raise CosineGateError(
                f"layer name {layer!r} {problem}; rename the ONNX node or pin it through the builder API."
            )
    spec = ",".join(f"{layer}:fp32" for layer in fp32_layers)
    return ["--precisionConstraints=obey", f"--layerPrecisions={spec}", f"--layerOutputTypes={spec}"]


def _workspace(profile, workspace_mib):
    workspace = profile.default_workspace_mib if workspace_mib is None else workspace_mib
    if not isinstance(workspace, int) or isinstance(workspace, bool) or workspace <= 0:
        raise CosineGateError(f"workspace {workspace!r} MiB is not a positive whole number; give MiB like 1024.")
    return workspace
