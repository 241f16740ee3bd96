"""The conditional GAN paper's MNIST networks (Mirza & Osindero 2014, section 4.1).

G: z -> 200 ReLU and y -> 1000 ReLU, joined -> 1200 ReLU -> the output (tanh for images,
which live in [-1, 1] here, where the paper used a sigmoid on [0, 1]).
D: x -> maxout 240 units x 5 pieces and y -> maxout 50 x 5, joined -> maxout 240 x 4 -> logits.
Dropout 0.5 in both networks, as in the paper. The sizes are the paper's; ``model.width`` is
not used. Without a condition the y branches are left out.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .layers import Heads, maybe_sn


class Maxout(nn.Module):
    """``units`` outputs, each the max over ``pieces`` linear maps of the input."""

    def __init__(self, in_features: int, units: int, pieces: int, spectral_norm: bool = False):
        super().__init__()
        self.units, self.pieces = units, pieces
        self.linear = maybe_sn(nn.Linear(in_features, units * pieces), spectral_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).view(len(x), self.units, self.pieces).amax(-1)


class CGANMLPGenerator(nn.Module):
    def __init__(self, latent_dim: int, shape: tuple[int, ...], cond_dim: int = 0, tanh: bool = True,
                 dropout: float = 0.5):
        super().__init__()
        self.shape = shape
        self.z_branch = nn.Sequential(nn.Linear(latent_dim, 200), nn.ReLU(), nn.Dropout(dropout))
        self.y_branch = (nn.Sequential(nn.Linear(cond_dim, 1000), nn.ReLU(), nn.Dropout(dropout))
                         if cond_dim else None)
        joint = 200 + (1000 if cond_dim else 0)
        layers = [nn.Linear(joint, 1200), nn.ReLU(), nn.Dropout(dropout), nn.Linear(1200, math.prod(shape))]
        if tanh:
            layers.append(nn.Tanh())
        self.joint = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        h = self.z_branch(z)
        if self.y_branch is not None:
            h = torch.cat([h, self.y_branch(cond)], 1)
        return self.joint(h).view(len(z), *self.shape)


class CGANMLPDiscriminator(nn.Module):
    def __init__(self, shape: tuple[int, ...], out_dim: int = 1, cond_dim: int = 0, aux_classes: int = 0,
                 spectral_norm: bool = False, dropout: float = 0.5):
        super().__init__()
        self.x_branch = nn.Sequential(Maxout(math.prod(shape), 240, 5, spectral_norm), nn.Dropout(dropout))
        self.y_branch = (nn.Sequential(Maxout(cond_dim, 50, 5, spectral_norm), nn.Dropout(dropout))
                         if cond_dim else None)
        joint = 240 + (50 if cond_dim else 0)
        self.joint = nn.Sequential(Maxout(joint, 240, 4, spectral_norm), nn.Dropout(dropout))
        self.heads = Heads(240, out_dim, 0, aux_classes, spectral_norm)

    def features(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        h = self.x_branch(x.flatten(1))
        if self.y_branch is not None:
            h = torch.cat([h, self.y_branch(cond)], 1)
        return self.joint(h)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None):
        return self.heads(self.features(x, cond))
