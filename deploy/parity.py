#!/usr/bin/env python
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

import _bootstrap  # noqa: F401
from cosinegate.cli import run_main
from cosinegate.cli.parity import main

if __name__ == "__main__":
    run_main(main)
