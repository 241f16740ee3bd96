"""Inception Score from class probabilities (any classifier's, not only Inception's)."""
from __future__ import annotations

import torch

from ..errors import MixganError


def inception_score(probs: torch.Tensor, splits: int = 10) -> tuple[float, float]:
    """exp(E_x KL(p(y|x) || p(y))), averaged over ``splits`` equal parts: (mean, std).

    With N equally used one-hot predictions it is N; with a single class it is 1.
    """
    p = torch.as_tensor(probs).double()
    if p.ndim != 2 or len(p) == 0:
        raise MixganError(f"IS needs N x C probabilities, got shape {tuple(p.shape)}")
    if splits < 1 or splits > len(p):
        raise MixganError(f"IS splits must be in [1, {len(p)}], got {splits}")
    scores = []
    for part in torch.tensor_split(p, splits):
        py = part.mean(0, keepdim=True)
        kl = torch.special.xlogy(part, part) - torch.special.xlogy(part, py.expand_as(part))
        scores.append(float(kl.sum(1).mean().exp()))
    t = torch.tensor(scores, dtype=torch.float64)
    return float(t.mean()), float(t.std(unbiased=False)) if len(t) > 1 else 0.0
