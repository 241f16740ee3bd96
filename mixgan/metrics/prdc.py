"""Precision and recall (Kynkäänniemi et al. 2019), density and coverage (Naeem et al. 2020).

Every nearest-neighbour computation walks the data in row blocks of ``chunk`` samples against
all columns, so memory is O(chunk x N), never N x N: for 50,000 x 50,000 samples and the
default chunk of 1,024 the largest temporary is 1,024 x 50,000 floats (~200 MB).
Comparisons are strict (``<``), as in the reference implementation of Naeem et al.
"""
from __future__ import annotations

import torch

from ..errors import MixganError

DEFAULT_CHUNK = 1024


def _check(a: torch.Tensor, what: str) -> torch.Tensor:
    a = torch.as_tensor(a)
    if a.ndim != 2 or len(a) == 0:
        raise MixganError(f"{what}: expected N x F features, got shape {tuple(a.shape)}")
    return a.float() if not a.is_floating_point() else a


def knn_radii(features: torch.Tensor, k: int = 5, chunk: int = DEFAULT_CHUNK) -> torch.Tensor:
    """Distance from each sample to its k-th nearest neighbour in the same set, itself excluded."""
    x = _check(features, "kNN radii")
    if not 1 <= k < len(x):
        raise MixganError(f"k must be in [1, {len(x) - 1}] for {len(x)} samples, got {k}")
    out = torch.empty(len(x), dtype=x.dtype, device=x.device)
    for i in range(0, len(x), chunk):
        d = torch.cdist(x[i:i + chunk], x)
        # the k+1 smallest include the sample itself at distance 0
        out[i:i + chunk] = d.topk(k + 1, dim=1, largest=False).values[:, k]
    return out


def prdc(features_real: torch.Tensor, features_fake: torch.Tensor, k: int = 5,
         chunk: int = DEFAULT_CHUNK, real_radii: torch.Tensor | None = None) -> dict[str, float]:
    """Precision, recall, density and coverage of fake features against real ones.

    precision: share of fake samples inside some real sample's k-NN ball;
    recall: share of real samples inside some fake sample's k-NN ball;
    density: mean over fake samples of (number of real balls containing it) / k;
    coverage: share of real samples whose k-NN ball contains some fake sample.

    ``real_radii``: the real set's k-NN radii (:func:`knn_radii`) where the caller keeps them, so
    scoring many sample sets against one real set computes them once.
    """
    real, fake = _check(features_real, "real features"), _check(features_fake, "fake features")
    if real.shape[1] != fake.shape[1]:
        raise MixganError(f"real and fake features differ in width: {real.shape[1]} vs {fake.shape[1]}")
    fake = fake.to(real.dtype)
    r_real = knn_radii(real, k, chunk) if real_radii is None else real_radii.to(real.device, real.dtype)
    r_fake = knn_radii(fake, k, chunk)
    in_real_ball = torch.zeros(len(fake), dtype=torch.bool, device=fake.device)
    balls_per_fake = torch.zeros(len(fake), dtype=torch.float64, device=fake.device)
    recall_hits = covered = 0
    for i in range(0, len(real), chunk):
        d = torch.cdist(real[i:i + chunk], fake)  # block of real rows x all fake columns
        inside = d < r_real[i:i + chunk, None]
        in_real_ball |= inside.any(0)
        balls_per_fake += inside.sum(0, dtype=torch.float64)
        recall_hits += int((d < r_fake[None]).any(1).sum())
        covered += int((d.min(1).values < r_real[i:i + chunk]).sum())
    return {"precision": float(in_real_ball.double().mean()), "recall": recall_hits / len(real),
            "density": float(balls_per_fake.mean() / k), "coverage": covered / len(real)}
