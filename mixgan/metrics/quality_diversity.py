"""GM-GAN's quality and diversity scores (Ben-Yosef & Weinshall 2018), as MISSION.md defines them.

diversity d = sqrt(d_intra * d_inter), with d_intra = 1 - mean MS-SSIM over pairs of generated
images that the classifier puts in the same class (diversity within a class: pairs across
classes would measure d_inter twice and hide a collapse inside each class) and
d_inter = H(mean one-hot class prediction) / log N. quality q = mean top-class
probability of the reference classifier. The paper's exact quality formula could not be read:
q is this project's definition; report precision and density beside it.
"""
from __future__ import annotations

import math

import torch

from ..errors import MixganError
from .msssim import mean_pairwise_msssim


def _probs(probs) -> torch.Tensor:
    p = torch.as_tensor(probs).double()
    if p.ndim != 2 or len(p) == 0 or p.shape[1] < 2:
        raise MixganError(f"expected N x C class probabilities with C >= 2, got shape {tuple(p.shape)}")
    return p


def quality_score(probs: torch.Tensor) -> float:
    """Mean over samples of the classifier's top-class probability."""
    return float(_probs(probs).max(1).values.mean())


def inter_diversity(probs: torch.Tensor) -> float:
    """Entropy of the histogram of predicted classes, divided by log N: 1 when classes are used equally."""
    p = _probs(probs)
    hist = torch.bincount(p.argmax(1), minlength=p.shape[1]).double() / len(p)
    return float(-torch.special.xlogy(hist, hist).sum() / math.log(p.shape[1]))


def pair_batch(shape: tuple[int, ...]) -> int:
    """Pairs compared at a time: 1,000 up to 28x28 grey, fewer for larger images, so the float64
    MS-SSIM maps of a batch stay near 100 MB."""
    n = 1
    for s in shape:
        n *= s
    return max(16, min(1000, (1 << 21) // max(1, n)))


def intra_diversity(images: torch.Tensor, pairs: int = 2000, seed: int = 0,
                    classes: torch.Tensor | None = None) -> float:
    """1 - mean MS-SSIM over random pairs of images (of one class each, when ``classes`` is given)."""
    return 1.0 - mean_pairwise_msssim(images, pairs=pairs, seed=seed, groups=classes,
                                      batch_size=pair_batch(tuple(images.shape[1:])))


def quality_diversity(images: torch.Tensor, probs: torch.Tensor, pairs: int = 2000, seed: int = 0) -> dict[str, float]:
    """quality, diversity and its two factors for generated images and their class probabilities."""
    if len(images) != len(probs):
        raise MixganError(f"{len(images)} images but {len(probs)} probability rows")
    classes = _probs(probs).argmax(1)
    if int(torch.bincount(classes).max()) < 2:
        classes = None  # every image its own class: fall back to pairs across classes
    d_intra, d_inter = intra_diversity(images, pairs, seed, classes), inter_diversity(probs)
    return {"quality": quality_score(probs), "diversity": math.sqrt(max(d_intra, 0.0) * d_inter),
            "diversity_intra": d_intra, "diversity_inter": d_inter}
