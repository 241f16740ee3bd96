"""Models by name: a small explicit registry."""
from __future__ import annotations

from ..errors import MixganError
from .acgan import ACGAN
from .base import GANModel, Samples
from .cgan import CGAN, VectorCGAN
from .gan import GAN
from .gmgan import GMGAN
from .gmgan_encoder import GMGANWithEncoder
from .gmgan_supervised import SupervisedGMGAN
from .icgan import ClassICGAN, ICGAN

MODELS: dict[str, type[GANModel]] = {
    "gan": GAN,
    "gmgan": GMGAN,
    "gmgan-supervised": SupervisedGMGAN,
    "cgan": CGAN,
    "acgan": ACGAN,
    "icgan": ICGAN,
    "icgan-class": ClassICGAN,
}


def get_model_class(name: str) -> type[GANModel]:
    if name not in MODELS:
        raise MixganError(f"unknown model '{name}' (choose from {', '.join(MODELS)})")
    return MODELS[name]


def model_class(cfg, spec=None) -> type[GANModel]:
    """The class that trains ``cfg`` on data described by ``spec``: the registry's, except that
    ``gmgan`` with ``encoder.enabled`` is GM-GAN with its encoder and ``cgan`` on data that carries
    condition vectors is the vector cGAN."""
    cls = get_model_class(cfg.model.name)
    if cls is GMGAN and cfg.encoder.enabled:
        return GMGANWithEncoder
    if cls is CGAN and spec is not None and spec.cond_dim > 0:
        return VectorCGAN
    return cls


def build_model(cfg, spec, device="cpu") -> GANModel:
    """The model ``cfg.model.name`` for data described by ``spec`` (a DataSpec)."""
    return model_class(cfg, spec)(cfg, spec, device)


__all__ = ["MODELS", "GANModel", "Samples", "build_model", "get_model_class", "model_class"]
