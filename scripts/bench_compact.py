#!/usr/bin/env python
"""Compact vs masked vs gate-free dense at batch > 1 on ONNX Runtime's CPU provider; prints a table.

    python scripts/bench_compact.py --backbone resnet20 --image-size 32 --batches 8,32 --threads 1 \
        --iterations 200 --rounds 5 --json train/results/compact-batch-onnxrt-cpu/resnet20-32.json

The model has random weights (seed 0; latencies depend on the architecture, not the training) with every gate
moved to skip --skip of the timed batch's images (cosinegate.bench.gate_patterns); images are random too.
Graphs are timed in turns (cosinegate.bench.compare_batched); each row's numbers come from one batch size.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

GRAPHS = ("dense", "masked", "compact", "compact_all_run", "compact_all_skip")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="resnet20")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--batches", default="8,32", help="comma list of batch sizes")
    p.add_argument("--skip", type=float, default=0.5, help="fraction of the batch each gated block skips")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--iterations", type=int, default=200)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--json", help="write the results here")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import numpy as np
    import torch

    from cosinegate.bench.batched import compare_batched
    from cosinegate.data.normalization import CIFAR10
    from cosinegate.models import build_model

    torch.manual_seed(0)
    model = build_model({"backbone": args.backbone, "mode": "predictive"}, 10, args.image_size).eval()
    model.normalization = dict(CIFAR10)
    print(f"{args.backbone} {args.image_size}x{args.image_size}, ONNX Runtime CPU, {args.threads} thread(s), skip {args.skip}, "
          f"{args.iterations} iterations in {args.rounds} rounds, p50 ms (speedup vs dense)")
    print("| batch | " + " | ".join(GRAPHS) + " | ideal | compact/ideal | compact vs masked |")
    print("|---" * (len(GRAPHS) + 4) + "|")
    results = []
    for batch in (int(b) for b in args.batches.split(",")):
        images = np.random.default_rng(batch).integers(0, 256, (batch, args.image_size, args.image_size, 3), dtype=np.uint8)
        result = compare_batched(model, images, args.skip, args.threads, args.warmup, args.iterations, args.rounds).to_json()
        results.append(result)
        cells = [f"{result['latency_ms'][g]['p50']:.2f} ({result['speedup_vs_dense'][g]:.2f}x)" for g in GRAPHS]
        print(f"| {batch} | " + " | ".join(cells) + f" | {result['ideal_speedup']:.2f}x | {result['compact_realized_over_ideal']:.2f} "
              f"| {result['compact_vs_masked']:.2f}x |", flush=True)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"command": " ".join(sys.argv), "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
