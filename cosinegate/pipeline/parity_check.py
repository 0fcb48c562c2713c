"""``check_parity(settings)``: an exported graph against the checkpoint it came from, gate decisions included."""

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from cosinegate.errors import CosineGateError


@dataclass(frozen=True)
class ParitySettings:
    """The checkpoint, the graph, the backend that runs it, the test images, and where the outputs go."""

    checkpoint: str
    onnx: str
    backend: str = "onnxrt"  # onnxrt | trt
    data: Optional[str] = None
    data_root: Optional[str] = None
    subset: Optional[int] = None
    image_size: Optional[int] = None
    test_images: int = 500
    json: Optional[str] = None
    save_reference: Optional[str] = None  # PyTorch outputs as Polygraphy RunResults JSON
    save_inputs: Optional[str] = None  # None: inputs.json beside save_reference
    int8: bool = False  # the INT8 tolerance profile


def saved_inputs_path(s):
    """Where the inputs go with a saved reference (None without one)."""
    if not s.save_reference:
        return None
    return s.save_inputs or str(Path(s.save_reference).with_name("inputs.json"))


def check_parity(s, log=print):
    """Provenance, then the Polygraphy comparison; the parity report (written to ``s.json`` when given)."""
    from cosinegate.artifacts import atomic_write_json, input_record
    from cosinegate.data import balanced_subset
    from cosinegate.data.choice import DataOrigin, choose_data
    from cosinegate.onnx import load_toolkit_onnx
    from cosinegate.onnx.export import get_metadata
    from cosinegate.onnx.provenance import check_provenance
    from cosinegate.parity import BACKENDS, FP32, INT8, run_parity
    from cosinegate.training.checkpoint import model_from_checkpoint

    if s.backend not in BACKENDS:
        raise CosineGateError(f"unknown backend {s.backend!r}; choose one of {', '.join(BACKENDS)}.")
    if s.test_images < 1:
        raise CosineGateError(f"--test-images must be at least 1, got {s.test_images}.")
    model, state = model_from_checkpoint(s.checkpoint, image_size=s.image_size)
    graph = load_toolkit_onnx(s.onnx)
    if s.backend == "onnxrt":
        check_profile_fits(graph, s.int8, s.onnx)
    provenance = check_provenance(s.checkpoint, s.onnx, get_metadata(graph))
    if not provenance["verified"]:
        log(f"note: {s.onnx} names no source checkpoint (no toolkit metadata or manifest); provenance not checked")
    data = choose_data(DataOrigin.of_checkpoint(state), s.data, s.data_root, log=log)
    test = data.test
    if s.subset:
        test = balanced_subset(test, s.subset)
    report = run_parity(model, graph, s.onnx, test, s.backend, s.test_images, INT8 if s.int8 else FP32,
                        saved_inputs_path(s), s.save_reference, log=log)
    report.update(checkpoint=str(s.checkpoint), onnx=str(s.onnx), data=data.record(), provenance=provenance,
                  inputs=input_record(checkpoint=s.checkpoint, onnx=s.onnx))
    if s.json:
        atomic_write_json(s.json, report)
    return report


def check_profile_fits(graph, int8, path):
    """On ONNX Runtime the graph decides the precision: a Q/DQ graph runs INT8 (the INT8 profile), any other FP32
    (the INT8 profile's looser bounds would hide an FP32 error)."""
    from cosinegate.graphmeta import all_nodes

    quantized = any(node.op_type == "QuantizeLinear" for node in all_nodes(graph.graph))
    if quantized and not int8:
        raise CosineGateError(f"{path} is an INT8 Q/DQ graph; add --int8 (the INT8 tolerance profile) to check it.")
    if int8 and not quantized:
        raise CosineGateError(f"--int8 on {path}, which has no Q/DQ nodes and runs in FP32 on ONNX Runtime; drop --int8 "
                              "(the FP32 profile) or pass the Q/DQ graph from cosinegate calibrate.")
