"""Parity of an exported graph with its checkpoint, through Polygraphy's Comparator.

Tolerance profiles:

- ``fp32``: every element of `logits` within atol 1e-4 or rtol 1e-3, `gates`
  exactly equal, every sample. The graph computes the same function with folded
  BatchNorm and other summation orders; measured on trained ResNet-20s the
  largest logit difference is below 1e-5 (logits of magnitude ~1-10), so 1e-4
  leaves 10x headroom while a wrong weight, a flipped gate or a missing block
  moves logits by 1e-2 or more.
- ``fp16`` (engines with the gate heads pinned to FP32, their inputs computed in FP16): logits within
  5e-2 (atol and rtol); a near-threshold gate may flip, so top-1 agreement >= 0.99 and gate agreement
  >= 0.995.
- ``int8`` (Q/DQ graphs with the same outputs): logits finite, no bound on their values;
  top-1 agreement >= 0.97 and gate agreement >= 0.995 over the samples. INT8
  moves argmax among near-tied logits: on real CIFAR-10 (ResNet-20, 10,000 test
  images) the Q/DQ graphs agreed on 97.8-98.4% of top-1 labels while top-1
  accuracy moved by at most 0.13 pp, so agreement is bounded at 0.97; gate
  decisions, which quantization must not flip, keep the 99.5% goal.
"""

import contextlib
import math
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from cosinegate.artifacts import atomic_path
from cosinegate.errors import CosineGateError
from cosinegate.graphmeta import GATES, INPUT, LOGITS, block_kinds, get_metadata
from cosinegate.parity import device_check
from cosinegate.progress import bar

BACKENDS = ("onnxrt", "trt")
STATIC = ("always_run", "always_skipped")


@dataclass(frozen=True)
class Tolerance:
    """A parity profile of device_check.PROFILES (the one table: check_parity.py carries it to the board), with no
    logit bound as inf."""

    name: str
    logits_atol: float
    logits_rtol: float
    min_top1: float
    min_gate_agreement: float

    @classmethod
    def of(cls, name):
        p = device_check.PROFILES[name]
        bound = (float("inf"), float("inf")) if p["logits_atol"] is None else (p["logits_atol"], p["logits_rtol"] or 0.0)
        return cls(name, *bound, min_top1=p["min_top1_agreement"], min_gate_agreement=p["min_gate_agreement"])

    def profile(self):
        """This tolerance as the profile dict device_check.check and parity_profile.json take (null: no bound)."""
        bound = (None, None) if math.isinf(self.logits_atol) else (self.logits_atol, self.logits_rtol)
        return {"profile": self.name, "logits_atol": bound[0], "logits_rtol": bound[1],
                "min_top1_agreement": self.min_top1, "min_gate_agreement": self.min_gate_agreement}

    def compare_func(self):
        return simple_compare_func(atol={LOGITS: self.logits_atol, GATES: 0.0}, rtol={LOGITS: self.logits_rtol, GATES: 0.0})


def simple_compare_func(atol, rtol):
    """Polygraphy's per-output tolerance comparison: ``SimpleCompareFunc`` (0.51+) where it exists, else
    ``CompareFunc.simple`` (0.49/0.50, e.g. the Polygraphy of TensorRT 10.x's tools/, which has no
    SimpleCompareFunc), which later releases deprecate."""
    simple = _simple_compare_class()
    if simple is None:
        from polygraphy.comparator import CompareFunc

        return CompareFunc.simple(atol=atol, rtol=rtol)
    return simple(atol=atol, rtol=rtol)


def _simple_compare_class():
    try:
        from polygraphy.comparator.compare import SimpleCompareFunc
    except ImportError:
        return None
    return SimpleCompareFunc


FP32, FP16, INT8 = Tolerance.of("fp32"), Tolerance.of("fp16"), Tolerance.of("int8")
PROFILES = {"fp32": FP32, "fp16": FP16, "int8": INT8}


def agreement_report(reference, outputs, tolerance):
    """Parity of stacked outputs ({"logits", "gates"} arrays) against a reference under a profile: device_check's
    verdict, with the largest error of both outputs."""
    report = check(reference, outputs, tolerance)
    report["max_abs_err"] = max_abs_errors(reference, outputs)
    return report


def max_abs_errors(reference, outputs):
    """{output: its largest absolute error}, None where an error is not finite (NaN or infinite outputs), so the
    report stays strict JSON."""
    errors = {name: float(np.abs(np.asarray(outputs[name], np.float64) - np.asarray(reference[name], np.float64)).max())
              for name in (LOGITS, GATES)}
    return {name: value if math.isfinite(value) else None for name, value in errors.items()}


def check(reference, outputs, tolerance):
    """device_check.check under ``tolerance``; outputs that do not match the reference's shapes are one line."""
    try:
        return device_check.check(reference, outputs, tolerance.profile())
    except ValueError as exc:
        fix = "make the reference again" if isinstance(exc, device_check.NoSamples) else "compare outputs of the same images"
        raise CosineGateError(f"{exc}; {fix}.") from None


def input_feeds(images, batch, samples, normalization=None):
    """Polygraphy feed dicts of `samples` test images (rounded down to whole batches), normalized like training, by
    the numpy function the device bundle's check_parity.py makes its feeds with (bit-identical on both sides)."""
    from cosinegate.data.normalization import CIFAR10
    from cosinegate.parity.device_check import float_feeds

    count = min(samples, len(images)) // batch * batch
    if count == 0:
        raise CosineGateError(f"need at least {batch} images for batch {batch}, have {min(samples, len(images))}; raise --test-images.")
    norm = normalization or CIFAR10
    return [OrderedDict(feed) for feed in float_feeds(images.images[:count], norm["mean"], norm["std"], batch, INPUT)]


def save_image_inputs(path, images, count, batch, normalization=None):
    """The first ``count`` uint8 images of ``images`` with their normalization and batch as an .npz (the device
    bundle's inputs.npz), written aside and renamed in."""
    from cosinegate.data.normalization import CIFAR10
    from cosinegate.parity.device_check import save_inputs

    norm = normalization or CIFAR10
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        save_inputs(handle, images.images[:count], norm["mean"], norm["std"], batch)


def saved_feeds(path):
    """The float feeds of saved reference inputs: an .npz of uint8 images (a bundle's inputs.npz, made into feeds by
    check_parity.py's numpy code) or a Polygraphy inputs JSON (cosinegate parity --save-inputs)."""
    from pathlib import Path

    from cosinegate.parity.device_check import load_inputs

    if Path(path).suffix != ".npz":
        from polygraphy.json import from_json

        return from_json(polygraphy_json(path, "reference inputs")[0])
    try:
        return load_inputs(path)
    except (OSError, ValueError) as exc:  # np.load: a damaged or foreign file; read_inputs: the wrong arrays
        raise CosineGateError(f"{path} is not a reference inputs .npz ({exc}); use the inputs.npz this toolkit wrote "
                              "(build-engine puts one in every bundle).") from None


def graph_runner(onnx_path, backend, int8=False):
    """Polygraphy runner of the exported graph: the runtime's ONNX Runtime runner (one thread, no spinning: parity
    runs one small batch at a time beside PyTorch) or TensorRT runner (engine built from the graph here)."""
    if backend == "onnxrt":
        from cosinegate.runtime.onnxruntime_backend import OnnxRuntimeRunner
        from cosinegate.runtime.ort_engine import check_if_ort_engine

        check_if_ort_engine(onnx_path)
        return OnnxRuntimeRunner(onnx_path, threads=1, spinning=False).polygraphy()
    if backend == "trt":
        from cosinegate.runtime.tensorrt_backend import TensorRTRunner
        from cosinegate.trtversion import require_tensorrt

        require_tensorrt("parity --backend trt")  # before the PyTorch side runs
        return TensorRTRunner.from_onnx(onnx_path, int8=int8, purpose="parity --backend trt").polygraphy()
    raise CosineGateError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}.")


def check_pairing(model, onnx_model):
    """The ONNX graph must have this checkpoint's backbone, gate mode, classes, blocks and image shape."""
    meta = get_metadata(onnx_model)
    for key, have in (("backbone", model.backbone), ("mode", model.mode)):
        if meta.get(key, have) != have:
            raise CosineGateError(
                f"the ONNX graph was exported from a {meta[key]} model, the checkpoint is {have}; "
                "pass the checkpoint this graph was exported from."
            )
    dims = {o.name: [d.dim_value for d in o.type.tensor_type.shape.dim] for o in onnx_model.graph.output}
    shape = [d.dim_value for d in onnx_model.graph.input[0].type.tensor_type.shape.dim]
    spec = model.spec
    want = [spec.in_channels, spec.image_size, spec.image_size]
    if shape[1:] != want or shape[0] < 1:
        raise CosineGateError(f"the ONNX input is {shape}, the checkpoint takes [N, {', '.join(map(str, want))}]; export the graph from this checkpoint.")
    if dims[LOGITS][1:] != [model.num_classes] or dims[GATES][1:] != [model.num_blocks]:
        raise CosineGateError(
            f"the ONNX graph has logits {dims[LOGITS]} and gates {dims[GATES]}, the checkpoint {model.num_classes} classes "
            f"and {model.num_blocks} blocks; pass the checkpoint this graph was exported from."
        )
    return shape[0]


def run_parity(model, onnx_model, onnx_path, images, backend="onnxrt", samples=200, tolerance=FP32, save_inputs=None, save_reference=None,
               save_images=None, log=None):
    """Run both sides on `images` and return the parity report (a JSON-ready dict). ``save_inputs``: the float feeds
    as Polygraphy JSON; ``save_images``: the uint8 images they were made from as an .npz (check_parity.py's format);
    ``log``: the caller's, for the progress bar over the images (cosinegate.progress)."""
    from polygraphy.comparator import Comparator
    from polygraphy.logger import G_LOGGER

    from cosinegate.runtime.torch_backend import TorchRunner

    batch = check_pairing(model, onnx_model)
    meta = get_metadata(onnx_model)
    kinds = block_kinds(meta) or ["dynamic"] * model.num_blocks
    feeds = input_feeds(images, batch, samples, model.normalization)
    torch_runner = TorchRunner(model, kinds, threads=1, batch=batch, record=True)
    runners = [torch_runner.polygraphy(), graph_runner(onnx_path, backend, tolerance is INT8)]
    with G_LOGGER.verbosity(G_LOGGER.CRITICAL), contextlib.ExitStack() as stack:  # the report says what failed
        images_done = stack.enter_context(bar(log, total=len(runners) * len(feeds), desc="parity", unit="batch"))
        for runner in runners:
            _count_inferences(runner, images_done.update)
        inputs_tmp = stack.enter_context(atomic_path(save_inputs)) if save_inputs else None  # renamed in on success
        results = Comparator.run(runners, data_loader=feeds, save_inputs_path=str(inputs_tmp) if inputs_tmp else None)
        accuracy = Comparator.compare_accuracy(results, compare_func=tolerance.compare_func())
        if save_reference:
            _save_reference(results, save_reference)
        if save_images:
            save_image_inputs(save_images, images, len(feeds) * batch, batch, model.normalization)
    ref, got = (stack_iterations(results[i][1]) for i in (0, 1))
    own = np.concatenate(torch_runner.own_decisions)
    report = summarize(ref, got, own, kinds, tolerance, bool(accuracy))
    report.update(form=meta.get("form"), policy=meta.get("policy"), backend=backend, batch=batch)
    report["summary"] = _summary_line(report)
    return report


def _count_inferences(runner, tick):
    """Call `tick()` after each of a Polygraphy runner's inferences (a progress bar's update)."""
    infer = runner.infer_impl

    def counted(*args, **kwargs):
        outputs = infer(*args, **kwargs)
        tick()
        return outputs

    runner.infer_impl = counted


def _save_reference(results, path):
    """Store the PyTorch side alone as Polygraphy RunResults JSON (for `polygraphy run --load-outputs`)."""
    from polygraphy.comparator import RunResults

    reference = RunResults()
    reference.append(results[0])
    with atomic_path(path) as tmp:
        reference.save(str(tmp))


def stack_iterations(iterations):
    """{"logits", "gates"} arrays of one runner's iterations, stacked in order."""
    return {name: np.concatenate([np.asarray(it[name]) for it in iterations]) for name in (LOGITS, GATES)}


def summarize(ref, got, own, kinds, tolerance, polygraphy_passed):
    """Agreement statistics of reference vs graph outputs and the verdict under `tolerance`."""
    verdict = check(ref, got, tolerance)
    passed = verdict["passed"] and (polygraphy_passed or tolerance.name != "fp32")  # fp32: Polygraphy's elementwise check too
    static = {f"block{i}": float((own[:, i] != (1.0 if k == "always_run" else 0.0)).mean()) for i, k in enumerate(kinds) if k in STATIC}
    return {
        "passed": bool(passed),
        "tolerance": {**tolerance.profile(), "gates_atol": 0.0},  # logits bounds null: none (strict JSON, no Infinity)
        "polygraphy_passed": bool(polygraphy_passed),
        "num_samples": int(ref[LOGITS].shape[0]),
        "logits_within_tolerance": verdict["logits_within_tolerance"],
        **{key: verdict[key] for key in ("gate_agreement", "gate_agreement_per_block", "flipped_blocks", "top1_agreement")},
        "max_abs_err": max_abs_errors(ref, got),
        "static_policy_disagreement": static,
        "decisions": {"ran": [int(n) for n in (ref[GATES] > 0.5).sum(0)]},  # per block, in the reference
    }


def _summary_line(r):
    """The verdict with the limits it was judged by: check_parity.py's line (device_check.summary), naming the graph."""
    t = r["tolerance"]
    return device_check.summary({**r, "profile": t["profile"], "max_abs_logit_error": r["max_abs_err"][LOGITS]}, t,
                                where=f"{r['form']} graph on {r['backend']}, ")


def polygraphy_json(path, what):
    """(text, parsed JSON) of a Polygraphy JSON from outside (a bundle's reference.json, saved feeds), checked before
    Polygraphy decodes it (parity/device_check.read_polygraphy_json); a bad one is a one-line CosineGateError."""
    try:
        return device_check.read_polygraphy_json(path)
    except (OSError, ValueError, RecursionError) as exc:
        raise CosineGateError(f"{what} {path} is refused ({' '.join(str(exc).split())[:200] or type(exc).__name__}); "
                              "use the file this toolkit wrote (unpack the bundle again).") from None


