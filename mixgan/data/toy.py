"""The 2-D Gaussian mixtures of the mode-collapse literature (Unrolled GAN, VEEGAN, PacGAN)."""
from __future__ import annotations

import math

import torch

from .base import Dataset


def ring_centers(modes: int = 8, radius: float = 2.0) -> torch.Tensor:
    angles = torch.arange(modes, dtype=torch.float64) * (2 * math.pi / modes)
    return torch.stack([radius * torch.cos(angles), radius * torch.sin(angles)], 1).float()


def grid_centers() -> torch.Tensor:
    ticks = torch.tensor([-4.0, -2.0, 0.0, 2.0, 4.0])
    gx, gy = torch.meshgrid(ticks, ticks, indexing="ij")
    return torch.stack([gx.flatten(), gy.flatten()], 1)


def _mixture(name: str, centers: torch.Tensor, std: float, n_train: int, n_test: int, seed: int) -> Dataset:
    g = torch.Generator().manual_seed(seed)

    def draw(n):
        y = torch.randint(len(centers), (n,), generator=g)
        return centers[y] + std * torch.randn(n, 2, generator=g), y

    x_tr, y_tr = draw(n_train)
    x_te, y_te = draw(n_test)
    return Dataset(name, x_tr, x_te, y_tr, y_te, num_classes=len(centers), kind="points",
                   centers=centers, std=std)


def ring(seed: int = 0, n_train: int = 100_000, n_test: int = 10_000) -> Dataset:
    """8 Gaussians evenly on a circle of radius 2, std 0.02."""
    return _mixture("ring", ring_centers(), 0.02, n_train, n_test, seed)


def grid(seed: int = 0, n_train: int = 100_000, n_test: int = 10_000) -> Dataset:
    """25 Gaussians at {-4,-2,0,2,4}^2, std 0.05."""
    return _mixture("grid", grid_centers(), 0.05, n_train, n_test, seed)
