"""MS-SSIM (Wang, Simoncelli & Bovik 2003) for small images.

The standard setting (11x11 Gaussian window, sigma 1.5, five scales) needs images of at least
176 pixels a side. For the small images here the scales are limited, by one rule:

* window: 7x7, sigma 1.5, for images of side >= 16; 3x3, sigma 1.0 for smaller ones (8x8 digits);
* scales M: the most (at most 5) for which the coarsest image, halved M-1 times by 2x2 average
  pooling, is still at least one window wide: 28x28 and 32x32 get 3 scales, 8x8 gets 2;
* weights: the first M of Wang et al.'s (0.0448, 0.2856, 0.3001, 0.2363, 0.1333), renormalised
  to sum to 1.

Contrast-structure terms are clamped at 0 before the weighted product (negative correlations
count as no similarity), so the value lies in [0, 1] and MS-SSIM(x, x) = 1.
"""
from __future__ import annotations

import torch
from torch.nn import functional as F

from ..errors import MixganError

WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def msssim_setting(height: int, width: int) -> tuple[int, float, tuple[float, ...]]:
    """(window size, sigma, per-scale weights) used for images of this size."""
    side = min(height, width)
    win, sigma = (7, 1.5) if side >= 16 else (3, 1.0)
    if side < win:
        raise MixganError(f"MS-SSIM needs images of at least {win}x{win}, got {height}x{width}")
    scales = 1
    while scales < len(WEIGHTS) and side // 2 ** scales >= win:
        scales += 1
    w = torch.tensor(WEIGHTS[:scales], dtype=torch.float64)
    return win, sigma, tuple((w / w.sum()).tolist())


def _window(size: int, sigma: float, channels: int, dtype) -> torch.Tensor:
    g = torch.exp(-((torch.arange(size, dtype=torch.float64) - (size - 1) / 2) ** 2) / (2 * sigma ** 2))
    g = (g / g.sum()).to(dtype)
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()


def _ssim_cs(x, y, win, data_range):
    """Per-image mean SSIM and contrast-structure term, over valid window positions and channels."""
    c = x.shape[1]
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    filt = lambda t: F.conv2d(t, win, groups=c)  # noqa: E731
    mx, my = filt(x), filt(y)
    sxx = filt(x * x) - mx * mx
    syy = filt(y * y) - my * my
    sxy = filt(x * y) - mx * my
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    lum = (2 * mx * my + c1) / (mx * mx + my * my + c1)
    return (lum * cs).flatten(1).mean(1), cs.flatten(1).mean(1)


def ms_ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """MS-SSIM of each pair (x[i], y[i]); N x C x H x W images, by default in [-1, 1] (range 2)."""
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    if x.shape != y.shape or x.ndim != 4:
        raise MixganError(f"MS-SSIM needs two N x C x H x W batches of one shape, got {tuple(x.shape)} "
                          f"and {tuple(y.shape)}")
    x, y = x.double(), y.double()
    size, sigma, weights = msssim_setting(x.shape[2], x.shape[3])
    win = _window(size, sigma, x.shape[1], x.dtype)
    out = torch.ones(len(x), dtype=x.dtype)
    for j, w in enumerate(weights):
        ssim, cs = _ssim_cs(x, y, win, data_range)
        term = ssim if j == len(weights) - 1 else cs
        out = out * term.clamp(min=0) ** w
        if j < len(weights) - 1:
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    return out.float()


def mean_pairwise_msssim(images: torch.Tensor, pairs: int = 2000, seed: int = 0,
                         batch_size: int = 1000, groups: torch.Tensor | None = None) -> float:
    """Mean MS-SSIM over ``pairs`` random pairs of distinct images (seeded).

    With ``groups`` (one integer per image), both images of a pair come from the same group;
    groups of one image are never drawn.
    """
    x = torch.as_tensor(images)
    if x.ndim != 4 or len(x) < 2:
        raise MixganError(f"need at least 2 images (N x C x H x W) for pairwise MS-SSIM, got {tuple(x.shape)}")
    gen = torch.Generator().manual_seed(seed)
    if groups is None:
        i = torch.randint(len(x), (pairs,), generator=gen)
        j = (i + torch.randint(1, len(x), (pairs,), generator=gen)) % len(x)  # j != i
    else:
        groups = torch.as_tensor(groups).long()
        order = torch.argsort(groups, stable=True)
        sizes = torch.bincount(groups[order])
        starts = torch.cumsum(sizes, 0) - sizes
        eligible = order[sizes[groups[order]] >= 2]
        if len(eligible) == 0:
            raise MixganError("no group holds two images, so no within-group pair exists")
        i = eligible[torch.randint(len(eligible), (pairs,), generator=gen)]
        g = groups[i]
        position = torch.empty_like(order)
        position[order] = torch.arange(len(order))
        rank = position[i] - starts[g]  # where i sits within its group
        other = (rank + torch.randint(1, 1 << 30, (pairs,), generator=gen) % (sizes[g] - 1) + 1) % sizes[g]
        j = order[starts[g] + other]
    values = [ms_ssim(x[i[s:s + batch_size]], x[j[s:s + batch_size]]) for s in range(0, pairs, batch_size)]
    return float(torch.cat(values).double().mean())
