"""Conditioning layers shared by the generator and discriminator bodies."""
from __future__ import annotations

import torch
from torch import nn


def maybe_sn(module: nn.Module, enabled: bool) -> nn.Module:
    return nn.utils.parametrizations.spectral_norm(module) if enabled else module


class CondBatchNorm(nn.Module):
    """Batch norm whose scale and shift are predicted from a condition vector (IC-GAN, BigGAN)."""

    def __init__(self, features: int, cond_dim: int, dims: int = 2):
        super().__init__()
        bn = nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d
        self.bn = bn(features, affine=False)
        self.gain = nn.Linear(cond_dim, features)
        self.bias = nn.Linear(cond_dim, features)
        nn.init.zeros_(self.gain.weight)
        nn.init.zeros_(self.gain.bias)
        nn.init.zeros_(self.bias.weight)
        nn.init.zeros_(self.bias.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        shape = (len(x), -1) + (1,) * (x.ndim - 2)
        return self.bn(x) * (1 + self.gain(cond).view(shape)) + self.bias(cond).view(shape)


class Norm(nn.Module):
    """Plain batch norm, or conditional batch norm when a condition is given at build time."""

    def __init__(self, features: int, cond_dim: int = 0, dims: int = 2):
        super().__init__()
        self.cond = cond_dim > 0
        if self.cond:
            self.norm = CondBatchNorm(features, cond_dim, dims)
        else:
            self.norm = nn.BatchNorm2d(features) if dims == 2 else nn.BatchNorm1d(features)

    def forward(self, x, cond=None):
        return self.norm(x, cond) if self.cond else self.norm(x)


class Heads(nn.Module):
    """Discriminator outputs over a feature vector: ``out_dim`` logits, an optional projection
    term <embed(cond), features> (Miyato & Koyama 2018) and an optional auxiliary class head."""

    def __init__(self, features: int, out_dim: int = 1, cond_dim: int = 0, aux_classes: int = 0, sn: bool = False):
        super().__init__()
        self.out = maybe_sn(nn.Linear(features, out_dim), sn)
        self.project = maybe_sn(nn.Linear(cond_dim, features, bias=False), sn) if cond_dim else None
        self.aux = maybe_sn(nn.Linear(features, aux_classes), sn) if aux_classes else None

    def forward(self, feat: torch.Tensor, cond: torch.Tensor | None = None):
        logits = self.out(feat)
        if self.project is not None:
            if cond.ndim == 3:  # n x m conditions per sample: one logit for each, from one pass of the body
                logits = logits + torch.einsum("nmf,nf->nm", self.project(cond), feat)
            else:
                logits = logits + (self.project(cond) * feat).sum(1, keepdim=True)
        if self.aux is not None:
            return logits, self.aux(feat)
        return logits
