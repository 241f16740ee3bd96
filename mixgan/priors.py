"""Latent distributions: the standard normal and the Gaussian mixture of GM-GAN.

Every prior separates randomness from parameters so that the dynamic mixture can be
trained by reparameterisation: ``draw`` returns the raw noise ``eps ~ N(0, I)`` and a
component index ``k``; calling the prior maps them to ``z = mu_k + s * A_k eps``.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .errors import MixganError

# Bounds that keep a learned scale from collapsing to 0 or blowing up.
MIN_SCALE, MAX_SCALE = 1e-3, 10.0
_LOG_MIN, _LOG_MAX = math.log(MIN_SCALE), math.log(MAX_SCALE)


class Prior(nn.Module):
    latent_dim: int
    components: int = 1

    def draw(self, n: int, generator: torch.Generator | None = None, component: int | None = None,
             device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """Raw noise ``eps`` (n x d) and component indices (n,)."""
        if component is not None and not 0 <= component < self.components:
            raise MixganError(f"component must be in [0, {self.components - 1}], got {component}")
        eps = torch.randn(n, self.latent_dim, generator=generator, device=device)
        if component is not None:
            k = torch.full((n,), component, dtype=torch.long, device=device)
        else:
            k = self.draw_components(n, generator, device)
        return eps, k

    def draw_components(self, n, generator, device) -> torch.Tensor:
        return torch.zeros(n, dtype=torch.long, device=device)

    def sample(self, n: int, component: int | None = None, scale: float = 1.0,
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """z and the component index of each sample; every scale multiplied by ``scale``."""
        device = next(self.buffers(), torch.empty(0)).device
        eps, k = self.draw(n, generator, component, device)
        return self(eps, k, scale), k


class NormalPrior(Prior):
    """N(0, I): the plain GAN's unimodal prior."""

    def __init__(self, latent_dim: int):
        super().__init__()
        self.latent_dim = latent_dim
        self.register_buffer("_anchor", torch.zeros(()))  # lets .to(device) move sampling

    def forward(self, eps: torch.Tensor, k: torch.Tensor | None = None, scale: float = 1.0) -> torch.Tensor:
        return eps * scale


class GaussianMixturePrior(Prior):
    """K Gaussians with means uniform in [-c, c]^d (or ``means='onehot'``: c times the k-th unit
    vector, all K equally far apart, c*sqrt(2)) and covariance sigma^2 I, weights 1/K.

    Static: everything fixed (buffers). Dynamic: means and per-component scales are
    parameters trained with G through ``z = mu_k + A_k eps``; A_k is diagonal or full
    lower-triangular, its diagonal kept in [MIN_SCALE, MAX_SCALE] by a sigmoid in log-scale (so a small sigma,
    such as the toy recipes' 0.01, still sits where the scale's gradient is alive) and its
    off-diagonal in (-MAX_SCALE, MAX_SCALE) by a scaled tanh.
    """

    def __init__(self, components: int, latent_dim: int, c: float = 1.0, sigma: float = 1.0,
                 dynamic: bool = False, covariance: str = "diag", seed: int = 0, means: str = "uniform"):
        super().__init__()
        if components < 1:
            raise MixganError(f"components must be >= 1, got {components}")
        if c <= 0 or sigma <= 0:
            raise MixganError("c and sigma must be > 0")
        if covariance not in ("diag", "full"):
            raise MixganError(f"covariance must be 'diag' or 'full', got '{covariance}'")
        self.components, self.latent_dim = components, latent_dim
        self.dynamic, self.covariance = dynamic, covariance
        if means == "onehot":
            if latent_dim < components:
                raise MixganError(f"means=onehot needs latent_dim >= components, got {latent_dim} < {components}")
            centres = c * torch.eye(components, latent_dim)
        elif means == "uniform":
            g = torch.Generator().manual_seed(seed)
            centres = (torch.rand(components, latent_dim, generator=g) * 2 - 1) * c
        else:
            raise MixganError(f"means must be 'uniform' or 'onehot', got '{means}'")
        if not dynamic:
            self.register_buffer("means", centres)
            self.register_buffer("sigma", torch.tensor(float(sigma)))
            return
        self.means = nn.Parameter(centres)
        raw = self._inverse_bound(torch.full((components, latent_dim), float(sigma)))
        self.raw_diag = nn.Parameter(raw)
        if covariance == "full":
            self.offdiag = nn.Parameter(torch.zeros(components, latent_dim, latent_dim))

    @staticmethod
    def _bound(raw: torch.Tensor) -> torch.Tensor:
        return torch.exp(_LOG_MIN + (_LOG_MAX - _LOG_MIN) * torch.sigmoid(raw))

    @staticmethod
    def _inverse_bound(scale: torch.Tensor) -> torch.Tensor:
        p = ((torch.log(scale) - _LOG_MIN) / (_LOG_MAX - _LOG_MIN)).clamp(1e-6, 1 - 1e-6)
        return torch.log(p) - torch.log1p(-p)

    def draw_components(self, n, generator, device) -> torch.Tensor:
        return torch.randint(self.components, (n,), generator=generator, device=device)

    def scales(self) -> torch.Tensor:
        """The factor A_k of every component as K x d x d (for inspection and tests)."""
        if not self.dynamic:
            eye = torch.eye(self.latent_dim, device=self.means.device)
            return self.sigma * eye.expand(self.components, -1, -1)
        a = torch.diag_embed(self._bound(self.raw_diag))
        if self.covariance == "full":
            a = a + torch.tril(MAX_SCALE * torch.tanh(self.offdiag), diagonal=-1)
        return a

    def forward(self, eps: torch.Tensor, k: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        mu = self.means[k]
        if not self.dynamic:
            return mu + (scale * self.sigma) * eps
        if self.covariance == "diag":
            return mu + scale * self._bound(self.raw_diag)[k] * eps
        return mu + scale * torch.einsum("nij,nj->ni", self.scales()[k], eps)

    def log_prob_components(self, z: torch.Tensor) -> torch.Tensor:
        """log N(z; mu_k, Sigma_k) for every component, n x K (used to assign z to a Gaussian)."""
        a = self.scales()
        diff = z[:, None, :] - self.means[None]
        sol = torch.linalg.solve_triangular(a[None].expand(len(z), -1, -1, -1), diff[..., None], upper=False)[..., 0]
        logdet = torch.log(torch.diagonal(a, dim1=-2, dim2=-1).abs()).sum(-1)
        return -0.5 * (sol ** 2).sum(-1) - logdet - 0.5 * self.latent_dim * math.log(2 * math.pi)


def build_prior(cfg, mixture: bool, seed: int = 0) -> Prior:
    """The prior a model asks for: a mixture from ``cfg.prior`` settings, or N(0, I)."""
    p = cfg.prior
    if not mixture:
        return NormalPrior(p.latent_dim)
    return GaussianMixturePrior(p.components, p.latent_dim, p.c, p.sigma, p.dynamic, p.covariance, seed=seed,
                                means=p.means)
