"""Fréchet distance between Gaussians fitted to features (FID), and its per-class mean (intra-FID)."""
from __future__ import annotations

import torch

from ..errors import MixganError


def feature_stats(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and (unbiased) covariance of N x F features, in float64."""
    f = torch.as_tensor(features).double()
    if f.ndim != 2 or len(f) < 2:
        raise MixganError(f"need at least 2 feature vectors (N x F), got shape {tuple(f.shape)}")
    mu = f.mean(0)
    c = f - mu
    return mu, c.T @ c / (len(f) - 1)


def _sqrt_psd(a: torch.Tensor) -> torch.Tensor:
    """Square root of a symmetric positive semi-definite matrix by eigendecomposition."""
    w, v = torch.linalg.eigh((a + a.T) / 2)
    return (v * w.clamp(min=0).sqrt()) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)).

    tr((S1 S2)^(1/2)) is computed as the sum of square roots of the eigenvalues of the symmetric
    PSD matrix S1^(1/2) S2 S1^(1/2), which has the same spectrum; unlike scipy's ``sqrtm`` of the
    non-symmetric product this never returns complex parts or blows up on singular covariances.
    """
    mu1, mu2 = torch.as_tensor(mu1).double(), torch.as_tensor(mu2).double()
    s1, s2 = torch.as_tensor(sigma1).double(), torch.as_tensor(sigma2).double()
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (len(mu1), len(mu1)):
        raise MixganError(f"feature statistics do not match: means {tuple(mu1.shape)} and {tuple(mu2.shape)}, "
                          f"covariances {tuple(s1.shape)} and {tuple(s2.shape)}")
    r1 = _sqrt_psd(s1)
    eig = torch.linalg.eigvalsh(r1 @ s2 @ r1)
    tr_covmean = eig.clamp(min=0).sqrt().sum()
    d = (mu1 - mu2).square().sum() + torch.trace(s1) + torch.trace(s2) - 2 * tr_covmean
    return float(d.clamp(min=0))


def fid(features_fake: torch.Tensor, features_real: torch.Tensor) -> float:
    """FID between two feature sets (N x F and M x F)."""
    return frechet_distance(*feature_stats(features_fake), *feature_stats(features_real))


def intra_fid(features_fake: torch.Tensor, labels_fake: torch.Tensor, features_real: torch.Tensor,
              labels_real: torch.Tensor, min_per_class: int = 2) -> float:
    """Mean over classes of the FID between class-c generated and class-c real features.

    Classes with fewer than ``min_per_class`` samples on either side are left out; if none is
    left the result is an error, not a number.
    """
    lf, lr = torch.as_tensor(labels_fake).long(), torch.as_tensor(labels_real).long()
    if len(lf) != len(features_fake) or len(lr) != len(features_real):
        raise MixganError("intra-FID: each feature vector needs one label")
    values = []
    for c in torch.unique(lr).tolist():
        ff, fr = features_fake[lf == c], features_real[lr == c]
        if len(ff) >= max(2, min_per_class) and len(fr) >= max(2, min_per_class):
            values.append(fid(ff, fr))
    if not values:
        raise MixganError("intra-FID: no class has enough generated and real samples")
    return float(sum(values) / len(values))
