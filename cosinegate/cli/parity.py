"""Check that an exported graph computes what its checkpoint computes, gate decisions included.

    python deploy/parity.py --checkpoint CKPT --onnx model.onnx --json parity.json
    python deploy/parity.py --checkpoint CKPT --onnx model.onnx --data imagefolder \\
        --data-root ../shared/data/cifar10-jpeg --test-images 1000
    python deploy/parity.py --checkpoint CKPT --onnx model.onnx --backend trt        # where TensorRT is installed
    python deploy/parity.py --checkpoint CKPT --onnx int8.onnx --int8                # Q/DQ graphs

First the graph's provenance: a graph whose metadata (or manifest) names another
checkpoint's sha256 is refused. Then Polygraphy's Comparator runs the checkpoint
(PyTorch, CPU) and the graph (ONNX Runtime, or TensorRT with --backend trt) on the
test images of the checkpoint's own training data (--data/--data-root override it;
a class-count mismatch is an error). fp32 profile: logits within atol 1e-4 / rtol 1e-3 per element, gates
exactly equal; --int8: top-1 agreement >= 0.97 and gate agreement >= 0.995. The
report lists blocks whose decisions flipped, and for blocks made static by policy
auto how often PyTorch's own decision disagrees with the fixed one. Exit status 0
when parity passes, 1 when it fails, 2 on bad input.

Without PyTorch (e.g. on the Jetson): save a reference here,

    python deploy/parity.py --checkpoint CKPT --onnx model.onnx --save-reference ref.json

(inputs go to inputs.json beside ref.json, or --save-inputs FILE), copy model.onnx,
inputs.json and ref.json to the device, and run

    polygraphy run model.onnx --trt --load-inputs inputs.json --load-outputs ref.json \\
        --atol logits:1e-4 gates:0 --rtol logits:1e-3 gates:0

(`--onnxrt` instead of `--trt` runs the same check with ONNX Runtime.)
"""

import argparse
import json
from pathlib import Path


def parse_args(argv=None):
    from cosinegate.cli import HelpFormatter, add_data_flags, add_version_flag, positive_int

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="the checkpoint the graph was exported from")
    parser.add_argument("--onnx", required=True, help="graph written by deploy/export_onnx.py")
    parser.add_argument("--backend", default="onnxrt", help="onnxrt | trt")
    add_data_flags(parser)
    parser.add_argument("--test-images", "--samples", dest="test_images", type=positive_int, default=500,
                        help="test images to compare (default 500; --samples is the old spelling)")
    parser.add_argument("--json", "--report", dest="json", metavar="REPORT", help="write the JSON report here")
    parser.add_argument("--save-reference", help="write PyTorch outputs as Polygraphy RunResults JSON")
    parser.add_argument("--save-inputs", help="where the inputs go with --save-reference (default inputs.json beside it)")
    parser.add_argument("--int8", action="store_true", help="INT8 tolerance profile: top-1 >= 0.97, gates >= 0.995")
    add_version_flag(parser)
    return parser.parse_args(argv)


def check_profile_fits(graph, int8, path):
    """On ONNX Runtime the graph decides the precision: a Q/DQ graph runs INT8 (the INT8 profile), any other FP32
    (the INT8 profile's looser bounds would hide an FP32 error)."""
    from cosinegate.errors import CosineGateError
    from cosinegate.graphmeta import all_nodes

    quantized = any(node.op_type == "QuantizeLinear" for node in all_nodes(graph.graph))
    if quantized and not int8:
        raise CosineGateError(f"{path} is an INT8 Q/DQ graph; add --int8 (the INT8 tolerance profile) to check it.")
    if int8 and not quantized:
        raise CosineGateError(f"--int8 on {path}, which has no Q/DQ nodes and runs in FP32 on ONNX Runtime; drop --int8 "
                              "(the FP32 profile) or pass the Q/DQ graph from calibration/calibrate.py.")


def main(argv=None):
    from cosinegate.artifacts import atomic_write_json
    from cosinegate.artifacts import input_record
    from cosinegate.cli import check_output_files
    from cosinegate.data import balanced_subset
    from cosinegate.data.choice import DataOrigin, choose_data
    from cosinegate.errors import CosineGateError

    args = parse_args(argv)
    from cosinegate.onnx import load_toolkit_onnx
    from cosinegate.onnx.export import get_metadata
    from cosinegate.onnx.provenance import check_provenance
    from cosinegate.parity import BACKENDS, FP32, INT8, run_parity
    from cosinegate.training.checkpoint import model_from_checkpoint
    if args.backend not in BACKENDS:
        raise CosineGateError(f"unknown backend {args.backend!r}; choose one of {', '.join(BACKENDS)}.")
    if args.test_images < 1:
        raise CosineGateError(f"--test-images must be at least 1, got {args.test_images}.")
    save_inputs = None
    if args.save_reference:
        save_inputs = args.save_inputs or str(Path(args.save_reference).with_name("inputs.json"))
    check_output_files({"checkpoint": args.checkpoint, "graph": args.onnx}, json=args.json,
                       save_reference=args.save_reference, save_inputs=save_inputs)
    model, state = model_from_checkpoint(args.checkpoint, image_size=args.image_size)
    graph = load_toolkit_onnx(args.onnx)
    if args.backend == "onnxrt":
        check_profile_fits(graph, args.int8, args.onnx)
    provenance = check_provenance(args.checkpoint, args.onnx, get_metadata(graph))
    if not provenance["verified"]:
        print(f"note: {args.onnx} names no source checkpoint (no toolkit metadata or manifest); provenance not checked")
    data = choose_data(DataOrigin.of_checkpoint(state), args.data, args.data_root)
    test = data.test
    if args.subset:
        test = balanced_subset(test, args.subset)
    report = run_parity(model, graph, args.onnx, test, args.backend, args.test_images, INT8 if args.int8 else FP32,
                        save_inputs, args.save_reference)
    report.update(checkpoint=str(args.checkpoint), onnx=str(args.onnx), data=data.record(), provenance=provenance,
                  inputs=input_record(checkpoint=args.checkpoint, onnx=args.onnx))
    if args.json:
        atomic_write_json(args.json, report)
    print(report["summary"])
    if report["static_policy_disagreement"]:
        print("static-policy disagreement (PyTorch's own decision vs the fixed one): "
              + json.dumps(report["static_policy_disagreement"]))
    if args.save_reference:
        print(f"wrote {args.save_reference} and {save_inputs}")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    from cosinegate.cli import run_main

    run_main(main)
