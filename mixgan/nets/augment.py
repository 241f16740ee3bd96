"""Differentiable augmentation of every image the discriminator sees (Zhao et al. 2020, DiffAugment).

Real and generated images pass through the same kinds of random colour change, translation and cutout, in D's update
and in G's, so D cannot tell them apart by the augmentation and G's gradient flows through it.
The draws come from the global RNG of the images' device, which the training loop seeds at every
step, so a run stays reproducible. Attached to D as a forward pre-hook: D's state_dict, DDP and
every model's way of calling D stay as they are.
"""
from __future__ import annotations

import torch
from torch import nn


def _shift(x: torch.Tensor, offset: torch.Tensor, dim: int) -> torch.Tensor:
    """Move each image by its own integer offset along ``dim`` (2 or 3), filling with zeros."""
    size = x.shape[dim]
    index = torch.arange(size, device=x.device) - offset[:, None]  # (B, size): source of each target pixel
    valid = ((index >= 0) & (index < size)).to(x.dtype)
    index = index.clamp(0, size - 1)
    view = (len(x), 1, size, 1) if dim == 2 else (len(x), 1, 1, size)
    expand = list(x.shape)
    out = x.gather(dim, index.view(view).expand(expand))
    return out * valid.view(view)


def colour(x: torch.Tensor) -> torch.Tensor:
    """Random brightness, saturation and contrast per image, as DiffAugment's 'color' (images in [-1, 1])."""
    n = len(x)
    x = x + (torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype) - 0.5)
    mean = x.mean(1, keepdim=True)
    x = (x - mean) * (torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype) * 2) + mean
    mean = x.mean((1, 2, 3), keepdim=True)
    return (x - mean) * (torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype) + 0.5) + mean


def translate(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by up to ``ratio`` of its side in each direction, zero-filled."""
    out = x
    for dim in (2, 3):
        limit = int(x.shape[dim] * ratio + 0.5)
        offset = torch.randint(-limit, limit + 1, (len(x),), device=x.device)
        out = _shift(out, offset, dim)
    return out


def cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    """Zero one square of ``ratio`` of the side per image, centred anywhere in it."""
    h, w = x.shape[2:]
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h, (len(x), 1), device=x.device)
    cx = torch.randint(0, w, (len(x), 1), device=x.device)
    rows = torch.arange(h, device=x.device) - (cy - ch // 2)  # (B, h): position inside the square
    cols = torch.arange(w, device=x.device) - (cx - cw // 2)
    rows, cols = (rows >= 0) & (rows < ch), (cols >= 0) & (cols < cw)
    keep = ~(rows[:, :, None] & cols[:, None, :])
    return x * keep[:, None].to(x.dtype)


class DiffAugment(nn.Module):
    """The augmentations of a policy ("color,translation,cutout"), applied in order to a batch of images."""

    OPS = {"color": colour, "translation": translate, "cutout": cutout}

    def __init__(self, policy: str):
        super().__init__()
        self.policy = [p.strip() for p in policy.split(",") if p.strip()]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in self.policy:
            x = self.OPS[name](x)
        return x


def attach_augment(d: nn.Module, policy: str) -> None:
    """Augment the image (first argument) of every call of ``d`` while it is in training mode."""
    aug = DiffAugment(policy)
    if not aug.policy:
        return

    def hook(module, args):
        if not module.training or args[0].ndim != 4:
            return None
        return (aug(args[0]), *args[1:])

    d.register_forward_pre_hook(hook)
