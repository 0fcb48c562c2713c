"""Engine builds through Polygraphy's TensorRT loaders (TensorRT and pycuda imported lazily).

``build_settings`` turns the target profile, the TensorRT version and the request into plain
settings (testable without TensorRT, decided with the guards of trtversion.py); ``build_engine``
feeds them to ``NetworkFromOnnxPath`` -> ``CreateConfig`` -> ``EngineFromNetwork`` -> ``SaveEngine``:

- Q/DQ INT8 on TensorRT >= 9 (and every build on 11): strongly typed network, precision from the graph.
- Weakly typed fp16/int8: builder flags, gate-head layers (``*/gate/*``) pinned to FP32 with
  ``precision_constraints="obey"`` (a flipped gate decision changes the computation, not just a digit).
- INT8 from a cache: Polygraphy ``Calibrator`` reading the cache (no data), with the calibrator class
  matching the cache header (EntropyCalibrator2 or MinMaxCalibrator).
- Timing cache load/save, builder optimization level (8.6+), workspace pool limit, DLA core with GPU fallback.

The functions that touch TensorRT (``config_kwargs``, ``cache_calibrator``, ``pin_float_layers``) take the
``tensorrt`` module as an argument, so tests/trt/test_api_surface.py can record the names they use on
each release's branch and check them against that release's bindings.
"""

import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cosinegate.errors import CosineGateError
from cosinegate.layernames import check_compact_releases
from cosinegate.trt.precision import check_calibrator, precision_plan
from cosinegate.trt.targets import HostInfo
from cosinegate.trtversion import (installed_tensorrt, parse_calibration_cache_header, parse_version, read_cache_text,
                                   require_tensorrt)


@dataclass
class BuildSettings:
    precision: str
    strongly_typed: bool
    fp16: bool
    int8: bool
    calib_cache: str = None
    calibrator: str = None  # "entropy2" | "minmax" (cache path only)
    fp32_layers: tuple = ()
    dla_core: int = None
    gpu_fallback: bool = False
    workspace_mib: int = 1024
    timing_cache: str = None
    optimization_level: int = 3
    notes: list = field(default_factory=list)

    def to_json(self):
        return asdict(self)


def cache_calibrator(calib_cache):
    """'minmax' or 'entropy2' from a calibration cache's header line."""
    header = read_cache_text(calib_cache).splitlines()[:1]
    if not header:
        raise CosineGateError(f"calibration cache {calib_cache} is empty; rerun calibration.")
    _, algorithm = parse_calibration_cache_header(header[0])
    return "minmax" if algorithm == "MinMaxCalibration" else "entropy2"


CONDITIONAL_CACHE = (
    "the INT8 calibration cache does not fit the conditional graph: it is keyed to the flat twin's tensor "
    "names, while TensorRT's ONNX parser renames tensors entering an If branch (<name>_InputLayer_output) and "
    "the branch outputs have no entry, so those tensors would silently run uncalibrated; build the conditional "
    "form with --int8 qdq, or use --int8 cache with --form masked."
)
COMPACT_CACHE = (
    "the INT8 calibration cache does not fit the compact graph: it holds the flat twin's tensors, and the compact "
    "graph's gathered and scattered ones (NonZero, Gather, ScatterND) have no entry, so they would run uncalibrated; "
    "for INT8 at a batch use --form masked --int8 cache, for the compact form --int8 qdq at --batch 1."
)


def check_int8_form(form, precision, int8_path):
    """Refuse the calibration cache for the conditional (If) and compact graphs; see CONDITIONAL_CACHE, COMPACT_CACHE."""
    if precision == "int8" and int8_path == "cache" and form in ("conditional", "compact"):
        raise CosineGateError(CONDITIONAL_CACHE if form == "conditional" else COMPACT_CACHE)


def dla_releases_that_build(profile, form, precision, int8_path, dla_core):
    """The releases of ``profile`` that can build this request (all but for INT8 on DLA); refused when none can: on
    8.x DLA takes INT8 only from a calibration cache (Q/DQ bundles build the float graph from it there), which the
    conditional graph cannot use (CONDITIONAL_CACHE), and 11.x has no DLA."""
    names = [str(r.version) for r in profile.tensorrt]
    if dla_core is None or precision != "int8":
        return names
    ok, why = [], {}
    for release in profile.tensorrt:
        path = release.version.dla_int8_path
        uses_cache = int8_path == "cache" or path == "cache"
        if path is None:
            why[str(release.version)] = "no DLA"
        elif uses_cache and form in ("conditional", "compact"):
            why[str(release.version)] = f"DLA takes INT8 only from a calibration cache, which the {form} graph cannot use"
        else:
            ok.append(str(release.version))
    if not ok:
        reasons = "; ".join(f"{v}: {w}" for v, w in why.items())
        raise CosineGateError(f"no TensorRT release of {profile.name} can build INT8 on DLA from the {form} graph "
                              f"({reasons}); use --form masked, or drop --dla-core.")
    return ok


def build_settings(profile, trt_version, precision, int8_path=None, calib_cache=None, dla_core=None,
                   workspace_mib=None, timing_cache=None, fp32_layers=(), form=None):
    """Decide how to build (no TensorRT needed): precision.precision_plan's decision, with the calibration cache
    read and checked where the plan takes INT8 from one."""
    version = parse_version(trt_version)
    plan = precision_plan(profile, version, precision, int8_path, dla_core)
    check_int8_form(form, precision, plan.int8_path)
    if form == "compact":
        check_compact_releases([version], f"{profile.name} build")
    calibrator = None
    if plan.uses_cache:
        if calib_cache is None:
            raise CosineGateError("--int8 cache needs a calibration cache; run calibration first or use --int8 qdq.")
        calibrator = cache_calibrator(calib_cache)
        check_cache_version(calib_cache, version)
        check_calibrator(plan, calibrator)
    return BuildSettings(precision, plan.strongly_typed, plan.fp16, plan.int8,
                         calib_cache=str(calib_cache) if plan.uses_cache else None, calibrator=calibrator,
                         fp32_layers=tuple(fp32_layers) if plan.pins_layers else (), dla_core=plan.dla_core,
                         gpu_fallback=plan.gpu_fallback, workspace_mib=workspace_mib or profile.default_workspace_mib,
                         timing_cache=timing_cache, notes=plan.notes)


def check_cache_version(calib_cache, version):
    """Refuse a cache whose header names another TensorRT release: TensorRT skips it silently and calibrates
    again (on no data), so the engine would not use these scales."""
    header = read_cache_text(calib_cache).splitlines()[:1]
    written_for, _ = parse_calibration_cache_header(header[0])
    if not written_for.same_release(version):
        raise CosineGateError(
            f"calibration cache {calib_cache} was written for TensorRT {written_for} (header {header[0].strip()}), "
            f"this build uses {version}; TensorRT would ignore it. Use the cache made for {version} "
            f"(bundles carry one per release) or recalibrate with --trt-version {version}."
        )


FLOAT_TYPES = (1, 10, 16)  # onnx.TensorProto FLOAT, FLOAT16, BFLOAT16


def gate_layer_names(onnx_path):
    """Names of the float-only gate-head nodes of a toolkit graph (top level): ``block{i}/gate/...``.

    Only nodes whose inputs and outputs are all float are pinned to FP32: TensorRT refuses a float
    precision or output type on a layer that takes or makes bool (``gate/decision`` Greater,
    ``gate/cond``, the bool->float ``gate/value`` Cast; NVIDIA/TensorRT#3570).
    """
    import onnx
    from onnx import shape_inference

    model = onnx.load(str(onnx_path), load_external_data=False)
    inferred = shape_inference.infer_shapes(model).graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*inferred.value_info, *inferred.input, *inferred.output)}
    types.update({t.name: t.data_type for t in inferred.initializer})

    def all_float(names):
        return all(types.get(name) in FLOAT_TYPES for name in names if name)

    return tuple(n.name for n in model.graph.node if "/gate/" in n.name and all_float(n.input) and all_float(n.output))


# Jetson SoCs in /proc/device-tree/compatible and their GPUs' compute capability (CUDA's GPU table: Jetson AGX Orin,
# Orin NX/Nano 8.7; Jetson AGX Xavier, Xavier NX 7.2).
TEGRA_CAPABILITY = {"nvidia,tegra234": "8.7", "nvidia,tegra194": "7.2"}


def detect_host(environ=None, device_tree="/proc/device-tree/compatible", nvidia_smi="nvidia-smi"):
    """HostInfo of this machine: CPU arch, GPU compute capability (None when nothing tells), TensorRT version.

    The capability comes from $CC (as build_on_device.sh takes it), torch, pycuda, ``nvidia-smi`` (desktop GPUs) or the
    Jetson SoC in the device tree (JetPack has no nvidia-smi, and pycuda is a separate install)."""
    import os

    env = os.environ if environ is None else environ
    readers = (lambda: _capability_from_env(env), _torch_capability, _pycuda_capability,
               lambda: _nvidia_smi_capability(nvidia_smi), lambda: _tegra_capability(device_tree))
    capability = next((c for c in (read() for read in readers) if c), None)
    return HostInfo(platform.machine(), capability, installed_tensorrt())


def _capability_from_env(env):
    """$CC when it reads like a compute capability (8.7); CC is also the C compiler's variable."""
    import re

    value = env.get("CC", "").strip()
    return value if re.fullmatch(r"[0-9]+\.[0-9]+", value) else None


def _torch_capability():
    try:
        import torch
    except ImportError:
        return None
    return ".".join(str(v) for v in torch.cuda.get_device_capability(0)) if torch.cuda.is_available() else None


def _pycuda_capability():
    try:
        import pycuda.driver as cuda

        cuda.init()
        return ".".join(str(v) for v in cuda.Device(0).compute_capability())
    except Exception:  # no pycuda or no GPU
        return None


def _nvidia_smi_capability(command):
    import subprocess

    if not command:
        return None
    try:
        done = subprocess.run([command, "--query-gpu=compute_cap", "--format=csv,noheader"], capture_output=True,
                              text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = done.stdout.split()
    return lines[0] if done.returncode == 0 and lines else None


def _tegra_capability(device_tree):
    try:
        compatible = Path(device_tree).read_bytes().split(b"\0")
    except OSError:
        return None
    return next((TEGRA_CAPABILITY[c.decode(errors="replace")] for c in compatible
                 if c.decode(errors="replace") in TEGRA_CAPABILITY), None)


def config_kwargs(settings, version, trt):
    """CreateConfig keyword arguments for ``settings`` on TensorRT ``version`` (guards from trtversion.py)."""
    version = parse_version(version)
    kwargs = {"memory_pool_limits": {trt.MemoryPoolType.WORKSPACE: settings.workspace_mib << 20}}
    if settings.fp16:
        kwargs["fp16"] = True
    if settings.int8:
        kwargs["int8"] = True
    if settings.fp32_layers:  # weakly typed builds only (build_settings): TensorRT 11 has no per-layer precision
        kwargs["precision_constraints"] = "obey"
    if version.has_builder_optimization_level:
        kwargs["builder_optimization_level"] = settings.optimization_level
    if settings.timing_cache and Path(settings.timing_cache).is_file():
        kwargs["load_timing_cache"] = settings.timing_cache
    if settings.dla_core is not None:
        kwargs.update(use_dla=True, allow_gpu_fallback=settings.gpu_fallback)
    return kwargs


def cache_reading_calibrator(calib_cache, calibrator, trt):
    """A Polygraphy Calibrator that only reads ``calib_cache`` (class from the cache header).

    The data loader is an empty sequence, not None: Polygraphy's calibrator iterates it on creation
    (``reset()``, 0.49-0.53). If TensorRT rejects the cache it asks for batches, gets none, and the
    build fails instead of calibrating on made-up data.
    """
    from polygraphy.backend.trt import Calibrator

    base = trt.IInt8MinMaxCalibrator if calibrator == "minmax" else trt.IInt8EntropyCalibrator2
    return Calibrator(data_loader=(), cache=str(calib_cache), BaseClass=base)


def pin_float_layers(network, pinned, trt):
    """Pin the layers named in ``pinned`` (or under ``name/``) to FP32, skipping any that touch bool."""
    def touches_bool(layer):
        tensors = [layer.get_input(i) for i in range(layer.num_inputs)] + [layer.get_output(i) for i in range(layer.num_outputs)]
        return any(t is not None and t.dtype == trt.bool for t in tensors)

    for layer in network:
        if not any(layer.name == p or layer.name.startswith(p + "/") for p in pinned) or touches_bool(layer):
            continue
        layer.precision = trt.float32
        for i in range(layer.num_outputs):
            layer.set_output_type(i, trt.float32)
    return network


def build_engine(onnx_path, engine_path, settings):
    """Build and save an engine with Polygraphy; return build seconds. Needs TensorRT."""
    version = require_tensorrt("building an engine")
    import tensorrt as trt
    from polygraphy.backend.trt import CreateConfig, EngineFromNetwork, NetworkFromOnnxPath, PostprocessNetwork, SaveEngine

    network = NetworkFromOnnxPath(str(onnx_path), strongly_typed=settings.strongly_typed or None)
    if settings.fp32_layers:
        pinned = set(settings.fp32_layers)
        network = PostprocessNetwork(network, lambda network: pin_float_layers(network, pinned, trt), name="pin-gate-heads-fp32")
    kwargs = config_kwargs(settings, version, trt)
    if settings.calib_cache:
        kwargs["calibrator"] = cache_reading_calibrator(settings.calib_cache, settings.calibrator, trt)
    config = CreateConfig(**kwargs)
    if settings.dla_core:
        from polygraphy.backend.trt import PostprocessConfig

        def pick_core(builder, network, config):
            config.DLA_core = settings.dla_core

        config = PostprocessConfig(config, pick_core)
    started = time.perf_counter()
    engine = EngineFromNetwork(network, config, save_timing_cache=settings.timing_cache)
    SaveEngine(engine, str(engine_path))()
    return time.perf_counter() - started
