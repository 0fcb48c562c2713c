"""Batches on the training device: uint8 -> normalized float, random crop (4-pixel pad) and flip in torch."""

import torch
from torch.nn import functional as F

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


_STATS = {}


def _stats(device):
    """Mean and std tensors, made once per device (no host-to-device copy per batch)."""
    key = str(device)
    if key not in _STATS:
        _STATS[key] = (torch.tensor(MEAN, device=device).view(1, 3, 1, 1), torch.tensor(STD, device=device).view(1, 3, 1, 1))
    return _STATS[key]


def to_tensor(images_uint8, device="cpu"):
    """[N, 32, 32, 3] uint8 (numpy or tensor) -> [N, 3, 32, 32] float normalized with CIFAR-10 statistics."""
    x = torch.as_tensor(images_uint8, device=device).permute(0, 3, 1, 2).float().div_(255.0)
    mean, std = _stats(x.device)
    return (x - mean) / std


def crop_flip_params(n, generator, padding=4):
    """[n, 3] int64 (dx, dy, flip) drawn from `generator` on the CPU."""
    offsets = torch.randint(0, 2 * padding + 1, (n, 2), generator=generator)
    flips = (torch.rand(n, generator=generator) < 0.5).long().unsqueeze(1)
    return torch.cat([offsets, flips], 1)


def random_crop_flip(x, generator=None, padding=4, params=None):
    """Random crop with zero padding and horizontal flip, per sample.

    The randomness comes from `params` ([N, 3] from crop_flip_params, e.g. drawn once
    per epoch and sliced per batch) or else from `generator`.
    """
    n, _, h, w = x.shape
    if params is None:
        params = crop_flip_params(n, generator, padding)
    params = params.to(x.device)
    dx, dy, flip = params[:, 0], params[:, 1], params[:, 2].bool()
    padded = F.pad(x, (padding, padding, padding, padding))
    rows = dy.view(n, 1) + torch.arange(h, device=x.device).view(1, h)  # [n, h]
    cols = dx.view(n, 1) + torch.arange(w, device=x.device).view(1, w)  # [n, w]
    cols = torch.where(flip.view(n, 1), cols.flip(1), cols)
    batch = torch.arange(n, device=x.device).view(n, 1, 1)
    out = padded.permute(0, 2, 3, 1)[batch, rows.view(n, h, 1), cols.view(n, 1, w)]  # [n, h, w, c]
    return out.permute(0, 3, 1, 2).contiguous()
