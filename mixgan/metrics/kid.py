"""Kernel Inception Distance (Bińkowski et al. 2018): the unbiased MMD² between feature sets
under the cubic polynomial kernel k(x, y) = (x·y / d + 1)³, averaged over random subsets.

Unlike FID its estimator is unbiased, so values from a few hundred or thousand samples can be
compared with each other and with larger evaluations.
"""
from __future__ import annotations

import torch

from ..errors import MixganError


def polynomial_kernel(x: torch.Tensor, y: torch.Tensor, degree: int = 3, coef0: float = 1.0) -> torch.Tensor:
    """(x yᵀ / d + coef0) ** degree for N x d and M x d features, in float64."""
    x, y = x.double(), y.double()
    return (x @ y.T / x.shape[1] + coef0) ** degree


def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor, degree: int = 3, coef0: float = 1.0) -> float:
    """The unbiased estimate of MMD² between the samples x (N x d) and y (M x d), N, M >= 2:
    the within-set kernel means leave out the diagonal (each point with itself)."""
    n, m = len(x), len(y)
    if n < 2 or m < 2:
        raise MixganError(f"KID needs at least 2 samples on each side, got {n} and {m}")
    kxx, kyy = polynomial_kernel(x, x, degree, coef0), polynomial_kernel(y, y, degree, coef0)
    kxy = polynomial_kernel(x, y, degree, coef0)
    within_x = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
    within_y = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return float(within_x + within_y - 2 * kxy.mean())


def kid(features_fake: torch.Tensor, features_real: torch.Tensor, subsets: int = 10, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float]:
    """(mean, standard deviation) of the unbiased MMD² over ``subsets`` random subsets of
    ``subset_size`` samples from each side (drawn without replacement; at most the smaller set's size)."""
    f, r = torch.as_tensor(features_fake), torch.as_tensor(features_real)
    if f.ndim != 2 or r.ndim != 2 or f.shape[1] != r.shape[1]:
        raise MixganError(f"KID needs two N x F feature sets of one width, got {tuple(f.shape)} and {tuple(r.shape)}")
    if subsets < 1:
        raise MixganError(f"KID needs at least one subset, got {subsets}")
    size = min(subset_size, len(f), len(r))
    gen = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(subsets):
        i = torch.randperm(len(f), generator=gen)[:size]
        j = torch.randperm(len(r), generator=gen)[:size]
        values.append(mmd2_unbiased(f[i], r[j]))
    t = torch.tensor(values, dtype=torch.float64)
    return float(t.mean()), float(t.std()) if len(values) > 1 else 0.0
