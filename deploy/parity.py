#!/usr/bin/env python
"""Check that an exported graph computes what its checkpoint computes, gate decisions included.

    python deploy/parity.py --checkpoint CKPT --onnx model.onnx --report parity.json
    python deploy/parity.py --checkpoint CKPT --onnx model.onnx --data imagefolder \\
        --data-root ../shared/data/cifar10-jpeg --samples 1000
    python deploy/parity.py --checkpoint CKPT --onnx model.onnx --backend trt        # where TensorRT is installed
    python deploy/parity.py --checkpoint CKPT --onnx int8.onnx --int8                # Q/DQ graphs

Polygraphy's Comparator runs the checkpoint (PyTorch, CPU) and the graph (ONNX
Runtime, or TensorRT with --backend trt) on the test images of --data (default
synthetic). fp32 profile: logits within atol 1e-4 / rtol 1e-3 per element, gates
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

import _bootstrap  # noqa: F401


def parse_args(argv=None):
    from cosinegate.cli import add_data_flags, positive_int

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="the checkpoint the graph was exported from")
    parser.add_argument("--onnx", required=True, help="graph written by deploy/export_onnx.py")
    parser.add_argument("--backend", default="onnxrt", help="onnxrt | trt")
    add_data_flags(parser)
    parser.add_argument("--samples", type=positive_int, default=500, help="test images to compare (default 500)")
    parser.add_argument("--report", "--json", help="write the JSON report here")
    parser.add_argument("--save-reference", help="write PyTorch outputs as Polygraphy RunResults JSON")
    parser.add_argument("--save-inputs", help="where the inputs go with --save-reference (default inputs.json beside it)")
    parser.add_argument("--int8", action="store_true", help="INT8 tolerance profile: top-1 >= 0.97, gates >= 0.995")
    return parser.parse_args(argv)


def main(argv=None):
    from cosinegate.artifacts import atomic_write_json
    from cosinegate.artifacts import input_record
    from cosinegate.data import balanced_subset, load_dataset
    from cosinegate.errors import CosineGateError
    from cosinegate.onnx import load_toolkit_onnx
    from cosinegate.parity import BACKENDS, FP32, INT8, run_parity
    from cosinegate.training.checkpoint import model_from_checkpoint

    args = parse_args(argv)
    if args.backend not in BACKENDS:
        raise CosineGateError(f"unknown backend {args.backend!r}; choose one of {', '.join(BACKENDS)}.")
    if args.samples < 1:
        raise CosineGateError(f"--samples must be at least 1, got {args.samples}.")
    model, _ = model_from_checkpoint(args.checkpoint, image_size=args.image_size)
    graph = load_toolkit_onnx(args.onnx)
    _, test = load_dataset(args.data or "synthetic", args.data_root, image_size=model.image_size)
    if args.subset:
        test = balanced_subset(test, args.subset)
    save_inputs = None
    if args.save_reference:
        save_inputs = args.save_inputs or str(Path(args.save_reference).with_name("inputs.json"))
    report = run_parity(model, graph, args.onnx, test, args.backend, args.samples, INT8 if args.int8 else FP32,
                        save_inputs, args.save_reference)
    report.update(checkpoint=str(args.checkpoint), onnx=str(args.onnx), data=args.data or "synthetic",
                  inputs=input_record(checkpoint=args.checkpoint, onnx=args.onnx))
    if args.report:
        atomic_write_json(args.report, report)
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
