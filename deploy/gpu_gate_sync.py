#!/usr/bin/env python
"""Batch-1 cost of deciding on the host at each gate, with PyTorch (no TensorRT needed):

    python deploy/gpu_gate_sync.py --checkpoint CKPT --device cuda --json gpu_gate_sync.json
    python deploy/gpu_gate_sync.py --backbone resnet20 --device cpu --iterations 5      # dry run, any machine

Variants: the dense (gate-free) network eager and captured in a CUDA graph (GPU only), the gated network
as deployed in PyTorch (each gate's decision read by the host, skipped blocks not computed), and the gated
network with every gate forced open (the sync cost alone). Inputs are real test images (--data) at the
model's input size and normalization; without --checkpoint an untrained predictive network of --backbone is used, which
measures speed only (its gates skip little) and says so.
"""

import _bootstrap  # noqa: F401
from cosinegate.cli import run_main
from cosinegate.cli.gpu_gate_sync import main

if __name__ == "__main__":
    run_main(main)
