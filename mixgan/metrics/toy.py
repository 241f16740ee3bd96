"""Mode coverage on the 2-D toy mixtures (Unrolled GAN, VEEGAN, PacGAN protocol)."""
from __future__ import annotations

import math

import torch


def mode_stats(samples: torch.Tensor, centers: torch.Tensor, std: float, min_count: int = 20,
               radius: float = 3.0) -> dict[str, float]:
    """Modes covered (>= ``min_count`` samples within ``radius`` std), the high-quality share
    (samples within ``radius`` std of some mode) and the KL divergence of the histogram of
    high-quality samples over modes from uniform."""
    samples, centers = samples.double(), centers.double().to(samples.device)
    dist = torch.cdist(samples, centers)
    nearest, which = dist.min(1)
    good = nearest <= radius * std
    counts = torch.bincount(which[good], minlength=len(centers)).double()
    hq = float(good.double().mean()) if len(samples) else 0.0
    if counts.sum() > 0:
        p = counts / counts.sum()
        nz = p > 0
        kl = float((p[nz] * (p[nz] * len(centers)).log()).sum())
    else:
        kl = math.inf
    return {"modes": int((counts >= min_count).sum()), "high_quality": hq, "kl": kl,
            "counts": counts.long().tolist()}
