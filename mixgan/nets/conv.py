"""DCGAN-style convolutional bodies that size themselves from the image shape.

An H x W image is reached from an s0 x s0 seed by n stride-2 up-sampling blocks, with
H = s0 * 2^n and s0 >= 4 (8 -> 4*2, 28 -> 7*4, 32 -> 4*8, 64 -> 4*16).
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import MixganError
from .layers import Heads, Norm, maybe_sn


def plan(size: int) -> tuple[int, int]:
    """(seed size s0, number of doublings n) for a square image of side ``size``."""
    s0, n = size, 0
    while s0 % 2 == 0 and s0 // 2 >= 4:
        s0, n = s0 // 2, n + 1
    if n == 0:
        raise MixganError(f"conv networks need an image side of s0 * 2^n with s0 >= 4, n >= 1; got {size}")
    return s0, n


class ConvGenerator(nn.Module):
    """fc -> s0 x s0 seed -> n x (ConvTranspose 4/2 + BN + ReLU) -> tanh image.

    A condition enters by concatenation with z and, with ``cond_mode='cbn'``, through
    conditional batch norm in every block.
    """

    def __init__(self, latent_dim: int, shape: tuple[int, int, int], width: int = 64, cond_dim: int = 0,
                 cond_mode: str = "concat"):
        super().__init__()
        channels, height, width_px = shape
        if height != width_px:
            raise MixganError(f"conv networks need square images, got {height}x{width_px}")
        s0, n = plan(height)
        self.s0 = s0
        chans = [width * 2 ** (n - 1 - i) for i in range(n)]  # e.g. n=2: [2w, w]
        cbn = cond_dim if cond_mode == "cbn" else 0
        self.concat = cond_dim if cond_mode == "concat" else 0
        self.fc = nn.Linear(latent_dim + self.concat, chans[0] * s0 * s0)
        self.norm0 = Norm(chans[0], cbn)
        self.blocks = nn.ModuleList()
        self.norms = nn.ModuleList()
        for i in range(n - 1):
            self.blocks.append(nn.ConvTranspose2d(chans[i], chans[i + 1], 4, 2, 1))
            self.norms.append(Norm(chans[i + 1], cbn))
        self.out = nn.ConvTranspose2d(chans[-1], channels, 4, 2, 1)
        self.chans0 = chans[0]

    def forward(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if self.concat:
            z = torch.cat([z, cond], 1)
        h = self.fc(z).view(len(z), self.chans0, self.s0, self.s0)
        h = torch.relu(self.norm0(h, cond))
        for block, norm in zip(self.blocks, self.norms):
            h = torch.relu(norm(block(h), cond))
        return torch.tanh(self.out(h))


class ConvDiscriminator(nn.Module):
    """n x (Conv 4/2 + LeakyReLU) -> flatten -> features; heads as in :class:`Heads`."""

    def __init__(self, shape: tuple[int, int, int], width: int = 64, out_dim: int = 1, cond_dim: int = 0,
                 aux_classes: int = 0, spectral_norm: bool = False):
        super().__init__()
        channels, height, _ = shape
        s0, n = plan(height)
        layers, c_in = [], channels
        for i in range(n):
            c_out = width * 2 ** i
            layers += [maybe_sn(nn.Conv2d(c_in, c_out, 4, 2, 1), spectral_norm), nn.LeakyReLU(0.2)]
            c_in = c_out
        self.body = nn.Sequential(*layers, nn.Flatten())
        self.feature_dim = c_in * s0 * s0
        self.heads = Heads(self.feature_dim, out_dim, cond_dim, aux_classes, spectral_norm)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None):
        return self.heads(self.features(x), cond)
