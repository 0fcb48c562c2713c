"""Batches on the training device: uint8 -> normalized float, random crop (padded) and flip in torch."""

import torch
from torch.nn import functional as F

from cosinegate.data.normalization import CIFAR10

_STATS = {}


def _stats(device, normalization):
    """Mean and std tensors, made once per device and normalization (no host-to-device copy per batch)."""
    mean, std = tuple(normalization["mean"]), tuple(normalization["std"])
    key = (str(device), mean, std)
    if key not in _STATS:
        _STATS[key] = (torch.tensor(mean, device=device).view(1, 3, 1, 1), torch.tensor(std, device=device).view(1, 3, 1, 1))
    return _STATS[key]


def to_tensor(images_uint8, device="cpu", normalization=None):
    """[N, H, W, 3] uint8 (numpy or tensor) -> [N, 3, H, W] float, (x/255 - mean) / std per channel.

    normalization: {"mean": [3], "std": [3]} (a model's `normalization`); default CIFAR-10's statistics.
    """
    x = torch.as_tensor(images_uint8, device=device).permute(0, 3, 1, 2).float().div_(255.0)
    mean, std = _stats(x.device, normalization or CIFAR10)
    return (x - mean) / std


def crop_padding(image_size):
    """Zero padding of the random crop: 4 pixels at 32x32 (the CIFAR recipe), scaled with the size."""
    return max(1, round(image_size / 8))


def crop_flip_params(n, generator, padding=4, slack=0):
    """[n, 3] int64 (dx, dy, flip) drawn from `generator` on the CPU; offsets in 0..2*padding+slack."""
    offsets = torch.randint(0, 2 * padding + slack + 1, (n, 2), generator=generator)
    flips = (torch.rand(n, generator=generator) < 0.5).long().unsqueeze(1)
    return torch.cat([offsets, flips], 1)


def random_crop_flip(x, generator=None, padding=4, params=None, size=None):
    """Random `size` x `size` crop (default: the input's size) of x zero-padded by `padding`, and
    horizontal flip, per sample.

    The randomness comes from `params` ([N, 3] from crop_flip_params, e.g. drawn once
    per epoch and sliced per batch) or else from `generator`.
    """
    n = x.shape[0]
    h = w = size or x.shape[2]
    if params is None:
        params = crop_flip_params(n, generator, padding, x.shape[2] - h)
    params = params.to(x.device)
    dx, dy, flip = params[:, 0], params[:, 1], params[:, 2].bool()
    padded = F.pad(x, (padding, padding, padding, padding))
    rows = dy.view(n, 1) + torch.arange(h, device=x.device).view(1, h)  # [n, h]
    cols = dx.view(n, 1) + torch.arange(w, device=x.device).view(1, w)  # [n, w]
    cols = torch.where(flip.view(n, 1), cols.flip(1), cols)
    batch = torch.arange(n, device=x.device).view(n, 1, 1)
    out = padded.permute(0, 2, 3, 1)[batch, rows.view(n, h, 1), cols.view(n, 1, w)]  # [n, h, w, c]
    return out.permute(0, 3, 1, 2).contiguous()
