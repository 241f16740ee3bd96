"""The embeddings themselves: f(x) -> features, with state fitted on the training set."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from ..data import DataSpec, Dataset
from ..errors import MixganError


class Embedding:
    """f: data -> features. Subclasses set ``dim`` at construction and may learn state in ``fit``."""

    name = "embedding"
    dim = 0

    def __init__(self, spec: DataSpec):
        self.spec = spec

    def fit(self, data: Dataset) -> None:
        """Prepare from the training set (centring statistics, a trained encoder...)."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        pass


class PixelEmbedding(Embedding):
    """Images: flattened pixels minus the training mean, so cosine similarity is a correlation.

    Points: centred, scaled by the RMS radius, and lifted onto the unit sphere by inverse
    stereographic projection, which keeps nearby points nearby; plain cosine on raw 2-D
    coordinates would only compare angles and pair points of different modes on one ray.
    """

    name = "pixels"

    def __init__(self, spec: DataSpec):
        super().__init__(spec)
        n = 1
        for s in spec.shape:
            n *= s
        self.points = spec.kind != "image"
        self.dim = n + 1 if self.points else n
        self.mean = torch.zeros(n)
        self.scale = torch.ones(())

    def fit(self, data: Dataset) -> None:
        """The training mean (images: summed a batch at a time, never the whole set as float)."""
        if self.points:
            x = data.x_train.flatten(1).double()
            self.mean = x.mean(0).float()
            self.scale = (x - x.mean(0)).pow(2).sum(1).mean().sqrt().clamp_min(1e-12).float()
            return
        from .store import as_float_images, train_batches

        total, count = torch.zeros(len(self.mean), dtype=torch.float64), 0
        for x in train_batches(data, 256):
            total += as_float_images(x).flatten(1).double().sum(0)
            count += len(x)
        self.mean = (total / max(count, 1)).float()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        u = x.flatten(1).float() - self.mean.to(x.device)
        if not self.points:
            return u
        u = u / self.scale.to(x.device)
        r2 = u.pow(2).sum(1, keepdim=True)
        return torch.cat([2 * u, r2 - 1], 1) / (r2 + 1)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"mean": self.mean, "scale": self.scale}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.mean, self.scale = state["mean"].float(), state["scale"].float()


class ProjectionEmbedding(PixelEmbedding):
    """Images: the centred pixels times a fixed random Gaussian matrix (seeded), ``DIM`` numbers.

    Cosine similarities of the centred pixels are kept approximately (Johnson-Lindenstrauss), at
    a fraction of the width: the pixel space of large image sets, for their neighbour search."""

    name = "projection"
    DIM = 128

    def __init__(self, spec: DataSpec, seed: int = 0):
        super().__init__(spec)
        if self.points:
            raise MixganError(f"embedding 'projection' needs images; dataset '{spec.name}' holds points "
                              "(use model.embedding=pixels)")
        n = self.dim
        self.settings = {"dim": self.DIM, "seed": seed}
        self.matrix = torch.randn(n, self.DIM, generator=torch.Generator().manual_seed(seed)) / self.DIM ** 0.5
        self.dim = self.DIM

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return super().__call__(x) @ self.matrix.to(x.device)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {**super().state_dict(), "matrix": self.matrix}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        super().load_state_dict(state)
        self.matrix = state["matrix"].float()


class ClassifierEmbedding(Embedding):
    """The reference classifier's penultimate layer (mixgan.metrics.classifier): supervised."""

    name = "classifier"

    def __init__(self, spec: DataSpec):
        super().__init__(spec)
        from ..metrics.classifier import FEATURE_DIM

        if spec.kind != "image":
            raise MixganError(f"embedding 'classifier' needs images; dataset '{spec.name}' holds points "
                              "(use model.embedding=pixels)")
        if spec.num_classes < 2:
            raise MixganError(f"embedding 'classifier' needs class labels, which '{spec.name}' lacks "
                              "(use model.embedding=selfsup)")
        self.dim, self.net = FEATURE_DIM, None

    def _build(self):
        from ..metrics.classifier import SmallCNN

        return SmallCNN(tuple(self.spec.shape), self.spec.num_classes).eval()

    def fit(self, data: Dataset) -> None:
        from ..metrics.classifier import get_classifier

        self.net = get_classifier(data).net.eval()

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.net is None:
            raise MixganError("embedding 'classifier' is not fitted")
        return self.net.to(x.device)(x.float())[0]

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu() for k, v in self.net.state_dict().items()} if self.net is not None else {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if state:
            self.net = self._build()
            self.net.load_state_dict(state)


class FunctionEmbedding(Embedding):
    """Any callable N x ... -> N x d; its width is found by calling it on two zero inputs."""

    def __init__(self, spec: DataSpec, fn: Callable[[torch.Tensor], torch.Tensor], name: str):
        super().__init__(spec)
        self.fn, self.name = fn, name
        with torch.no_grad():
            out = torch.as_tensor(fn(torch.zeros(2, *spec.shape)))
        if out.ndim != 2 or len(out) != 2:
            raise MixganError(f"embedding '{name}' must map N inputs to N x d features, "
                              f"gave shape {tuple(out.shape)} for 2 inputs")
        self.dim = out.shape[1]

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(self.fn(x)).float()


@torch.no_grad()
def embed(embedding: Embedding, x: torch.Tensor, batch_size: int = 1000, normalize: bool = True) -> torch.Tensor:
    """Features of ``x``, in batches; L2-normalised unless ``normalize`` is false."""
    if len(x) == 0:
        return torch.zeros(0, embedding.dim)
    parts = [embedding(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
    h = torch.cat(parts).float()
    if h.shape[1] != embedding.dim:
        raise MixganError(f"embedding '{embedding.name}' gave {h.shape[1]} features, expected {embedding.dim}")
    if not torch.isfinite(h).all():
        raise MixganError(f"embedding '{embedding.name}' gave NaN or infinite features")
    return F.normalize(h, dim=1) if normalize else h
