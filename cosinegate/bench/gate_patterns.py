"""Known gate patterns for benchmarks: move each predictive gate's threshold so that its block
skips a chosen fraction of given images.

Block by block (each block's input depends on the decisions before it), the control bias is
shifted so the threshold sits midway between two neighbouring gate logits of the images, so
no image is a tie and the fraction is exact on those images. A checkpoint made this way is a
benchmark artifact: its accuracy is not a trained model's, and it records that it was forced.
"""

import numpy as np
import torch

from cosinegate.data.augment import to_tensor
from cosinegate.errors import CosineGateError


@torch.no_grad()
def force_skip_fraction(model, images, fraction):
    """Shift every gate of `model` (predictive, eval mode) so it skips `fraction` of `images` (uint8 NHWC)."""
    if model.mode != "predictive":
        raise CosineGateError(f"gate patterns need predictive gates; this checkpoint's mode is {model.mode}.")
    if not 0.0 <= fraction <= 1.0:
        raise CosineGateError(f"--skip {fraction} is a fraction of images; use 0..1 (e.g. 0.5).")
    model.eval()
    h = model.stem(to_tensor(images, "cpu", model.normalization))
    n = len(images)
    k = int(round(fraction * n))
    for block in model.blocks:
        if block.gate is not None:
            logits = np.sort(block.gate(h)[0].double().numpy())
            if k == 0:
                shift = logits[0] - 1.0
            elif k == n:
                shift = logits[-1] + 1.0
            else:
                shift = (logits[k - 1] + logits[k]) / 2.0
            block.gate.control_head.bias -= float(shift)
        h, _ = block(h)
    return model
