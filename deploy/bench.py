#!/usr/bin/env python
"""Latency, throughput, skip rate and executed MACs of an engine, an ONNX graph or a checkpoint.

    python deploy/bench.py --onnx model.onnx --backend onnxrt --threads 1 --json bench.json
    python deploy/bench.py --checkpoint CKPT --backend torch
    python deploy/bench.py --engine engines/jetson-orin/m-conditional-fp16-trt10.3.0-sm87.engine     # on the device
    python deploy/bench.py --checkpoint CKPT --backend onnxrt --compare-dense --data imagefolder --data-root DIR

Skip rate and executed MACs come from the model's own `gates` output on real test images: by
default the test split of the data the model was trained on (from --checkpoint, else from the
graph's or engine's metadata), or --data/--data-root; --random-input measures speed only.
TensorRT: GPU time from CUDA events and host wall time; on Jetson the tegrastats power summary,
nvpmodel mode and jetson_clocks state.
--compare-dense runs the dense baseline (the plain backbone with the same weights and no gates,
full ORT optimization; --dense-onnx or exported from --checkpoint), the flat twin (every gate
head computed), the statically pruned graph (masked form, policy auto: always-skipped blocks
removed) and the conditional graph with every gate forced on, beside the conditional graph, on
the same images, timed in turns (--rounds), and prints realized vs ideal speedup, both against
the gate-free dense graph and its MACs.
"""

import _bootstrap  # noqa: F401
from cosinegate.cli import run_main
from cosinegate.cli.bench import main

if __name__ == "__main__":
    run_main(main)
