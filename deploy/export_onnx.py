#!/usr/bin/env python
"""Export a CosineGate checkpoint to ONNX (plus a <out>.json manifest).

    python deploy/export_onnx.py --checkpoint runs/balanced/best.pt --out model.onnx
    python deploy/export_onnx.py --checkpoint CKPT --out masked.onnx --form masked --batch 32
    python deploy/export_onnx.py --checkpoint CKPT --out flat.onnx --form flat
    python deploy/export_onnx.py --checkpoint CKPT --out onnx/ --form masked      # writes onnx/model.masked.onnx

Forms: `conditional` (default; batch 1; one ONNX If per dynamic block, so a skipped
block is not computed), `masked` (any batch; every block computed, selected per
sample; the only form for paper-mode gates and for batches > 1, since a TensorRT
conditional takes one scalar condition), `flat` (every block runs; the twin for
graph passes and quantization). Outputs: `logits` [N, classes] and `gates` [N, blocks]
(1 = block executed). Input `input` [N, 3, S, S] float32 (S = the checkpoint's image size), RGB,
(pixel/255 - mean)/std with the checkpoint's mean/std; the graph's metadata (`cosinegate.*`) holds
the class names, input size and layout, mean/std, gate threshold, block policy, training data and
the checkpoint's sha256. --out DIR/ (or an existing folder) writes DIR/model.<form>.onnx.

Policy (conditional and masked): `auto` (default) uses held-out skip rates (the
checkpoint's, or --skip-rates FILE): always-skipped blocks (>= 99.5%) are removed,
always-run blocks (<= 0.5%) are plain, only dynamic blocks are gated; with
--if-cost-table FILE also the dynamic blocks whose expected saving (skip rate x
block latency) is below their If cost. `conditional-all` gates every gated block,
`pruned` is auto with every dynamic block plain (no If), `dense` the gate-free network.

Opset: default 17, accepted by TensorRT 8.5 (JetPack 5, max 17) and TensorRT 10.x
(JetPack 6, opsets 9-20).
"""

import _bootstrap  # noqa: F401
from cosinegate.cli import run_main
from cosinegate.cli.export_onnx import main

if __name__ == "__main__":
    run_main(main)
