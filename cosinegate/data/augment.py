"""Batches on the training device: uint8 -> normalized float, random crop (4-pixel pad) and flip in torch."""

import torch
from torch.nn import functional as F

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


def to_tensor(images_uint8, device="cpu"):
    """[N, 32, 32, 3] uint8 numpy -> [N, 3, 32, 32] float normalized with CIFAR-10 statistics."""
    x = torch.as_tensor(images_uint8, device=device).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=device).view(1, 3, 1, 1)
    return (x - mean) / std


def random_crop_flip(x, generator, padding=4):
    """Random crop with zero padding and horizontal flip, per sample, driven by `generator`."""
    n, _, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device="cpu").to(x.device)
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device="cpu").to(x.device)
    flip = (torch.rand(n, generator=generator, device="cpu") < 0.5).to(x.device)
    rows = (dy.view(n, 1) + torch.arange(h, device=x.device).view(1, h))  # [n, h]
    cols = dx.view(n, 1) + torch.arange(w, device=x.device).view(1, w)  # [n, w]
    cols = torch.where(flip.view(n, 1), cols.flip(1), cols)
    batch = torch.arange(n, device=x.device).view(n, 1, 1)
    out = padded.permute(0, 2, 3, 1)[batch, rows.view(n, h, 1), cols.view(n, 1, w)]  # [n, h, w, c]
    return out.permute(0, 3, 1, 2).contiguous()
