"""Fully connected bodies for points and small vectors (the 2-D toy mixtures, vector data)."""
from __future__ import annotations

import math

import torch
from torch import nn

from .layers import Heads, maybe_sn


class MLPGenerator(nn.Module):
    """z (joined with the condition, if any) -> 3 ReLU layers -> a linear output of ``shape``."""

    def __init__(self, latent_dim: int, shape: tuple[int, ...], width: int = 128, cond_dim: int = 0,
                 depth: int = 3, tanh: bool = False):
        super().__init__()
        self.shape = shape
        layers, size = [], latent_dim + cond_dim
        for _ in range(depth):
            layers += [nn.Linear(size, width), nn.ReLU()]
            size = width
        layers.append(nn.Linear(size, math.prod(shape)))
        if tanh:
            layers.append(nn.Tanh())
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if cond is not None:
            z = torch.cat([z, cond], 1)
        return self.net(z).view(len(z), *self.shape)


class MLPDiscriminator(nn.Module):
    def __init__(self, shape: tuple[int, ...], width: int = 128, out_dim: int = 1, cond_dim: int = 0,
                 aux_classes: int = 0, spectral_norm: bool = False, depth: int = 3):
        super().__init__()
        layers, size = [], math.prod(shape)
        for _ in range(depth):
            layers += [maybe_sn(nn.Linear(size, width), spectral_norm), nn.LeakyReLU(0.2)]
            size = width
        self.body = nn.Sequential(*layers)
        self.heads = Heads(width, out_dim, cond_dim, aux_classes, spectral_norm)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.flatten(1))

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None):
        return self.heads(self.features(x), cond)
