#!/usr/bin/env python
"""Train a CosineGate model (or its dense baseline) from a preset or YAML config.

    python train/train.py --config train/configs/balanced.yaml --epochs 5 --out runs/balanced
    # two phases: dense first, then gated fine-tuning from it (gates and penalty ramped in, distilled)
    python train/train.py --config dense --out runs/dense
    python train/train.py --config two-phase --init-from runs/dense/last.pt --out runs/two-phase
    # the GPU speed path (bf16 autocast, channels_last, fused SGD), stopping cleanly after 9 minutes
    python train/train.py --config balanced --device cuda --fast --time-limit 540 --out runs/b
    torchrun --nproc_per_node=2 train/train.py --config balanced --device cpu ...
"""

import _bootstrap  # noqa: F401
from cosinegate.cli import run_main
from cosinegate.cli.train import main

if __name__ == "__main__":
    run_main(main)
