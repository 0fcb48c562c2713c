"""Known gate patterns for benchmarks: move each predictive gate's threshold so that its block
skips a chosen fraction of given images.

Block by block (each block's input depends on the decisions before it), the control bias is
shifted so the threshold sits midway between two neighbouring gate logits of the images, so
no image is a tie and the fraction is exact on those images. A checkpoint made this way is a
benchmark artifact: its accuracy is not a trained model's, and it records that it was forced.
"""

from dataclasses import dataclass

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


@dataclass
class ForcedCheckpoint:
    """What `force_checkpoint` wrote: the model, the skip rates measured on the images, and the record it stored."""

    model: object
    skip_rates: list
    record: dict  # skip, samples, data, from, from_sha256, note (the checkpoint's "forced_gates")
    data: object  # the cosinegate.data.choice data chosen


def force_checkpoint(checkpoint, out, skip=0.5, test_images=200, data=None, data_root=None, image_size=None, log=print):
    """Write to `out` a copy of the predictive `checkpoint` whose gates skip `skip` of the first `test_images` test
    images of its data (see force_skip_fraction); the copy records that its gates were forced."""
    from cosinegate.artifacts import sha256_file
    from cosinegate.data.choice import DataOrigin, choose_data
    from cosinegate.evaluation import run_model
    from cosinegate.training.checkpoint import model_from_checkpoint, save_checkpoint

    model, state = model_from_checkpoint(checkpoint, image_size=image_size)
    chosen = choose_data(DataOrigin.of_checkpoint(state), data, data_root, log=log)
    if test_images < 2 or test_images > len(chosen.test):
        raise CosineGateError(f"--test-images {test_images}: use 2..{len(chosen.test)} (the test split's size).")
    images = chosen.test.take(range(test_images))
    force_skip_fraction(model, images.images, skip)
    skip_rates = (1.0 - run_model(model, images).gates.mean(0)).tolist()
    record = {"skip": skip, "samples": test_images, "data": chosen.record(), "from": str(checkpoint),
              "from_sha256": sha256_file(checkpoint), "note": "gates forced for benchmarks; not a trained model"}
    save_checkpoint(out, **{**{k: v for k, v in state.items() if k != "format"}, "model": model.state_dict(),
                            "skip_rates": skip_rates, "forced_gates": record})
    return ForcedCheckpoint(model, skip_rates, record, chosen)
