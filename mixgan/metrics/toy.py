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


def conditioned_mode_share(run, per_mode: int = 20, per_instance: int = 100, seed: int = 0,
                           radius: float = 3.0) -> dict:
    """An instance-conditioned run on a toy mixture: condition on ``per_mode`` random training points
    of every mode, ``per_instance`` samples each, and mark the samples within ``radius`` std of the
    conditioning point's mode. Returns the chosen instances, the samples, their mode and the mask,
    the overall share and the share per mode."""
    data = run.data
    g = torch.Generator().manual_seed(seed)
    modes = len(data.centers)
    chosen = torch.cat([(data.y_train == m).nonzero()[:, 0][torch.randperm(int((data.y_train == m).sum()),
                                                                            generator=g)[:per_mode]]
                        for m in range(modes)])
    s = run.sample(0, instances=chosen, per_instance=per_instance, seed=0)
    mode = data.y_train[s.instance]
    near = ((s.x - data.centers[mode]).norm(dim=1) <= radius * data.std).float()
    return {"chosen": chosen, "samples": s, "mode": mode, "near": near, "overall": float(near.mean()),
            "per_mode": [float(near[mode == m].mean()) for m in range(modes)]}
