"""Instance embeddings for IC-GAN by name: h = f(x), L2-normalised, and their k nearest neighbours.

The embedding classes live in ``base.py`` (and ``selfsup.py``), the neighbour search in
``neighbors.py``; this module is the registry.

``get_embedding(name, spec)`` returns an :class:`Embedding` by name:

- ``classifier``: the reference classifier's 128-d penultimate layer (supervised),
- ``selfsup``: a contrastive encoder trained by the project without labels (cached),
- ``pixels``: the centred pixels (images), or points lifted onto a sphere (toy data),
- ``projection``: the centred pixels projected to 128 dimensions by a fixed random matrix (images),
- a name added with :func:`register_embedding`, or ``"module:function"`` naming any callable
  that maps an N x ... batch to N x d features.

An embedding is built from the data's shape, ``fit`` on the training set, and carries its state
(centring, encoder weights) as tensors so a saved run can embed unseen instances.
"""
from __future__ import annotations

import importlib
from typing import Callable

import torch

from ..data import DataSpec
from ..errors import MixganError
from .base import ClassifierEmbedding, Embedding, FunctionEmbedding, PixelEmbedding, ProjectionEmbedding, embed
from .neighbors import BACKENDS, METHODS, THRESHOLD, faiss_available, knn, recall_at_k, resolve_method


def _selfsup(spec: DataSpec) -> Embedding:
    from .selfsup import SelfSupEmbedding

    return SelfSupEmbedding(spec)


EMBEDDINGS: dict[str, Callable[[DataSpec], Embedding]] = {
    "classifier": ClassifierEmbedding,
    "selfsup": _selfsup,
    "pixels": PixelEmbedding,
    "projection": ProjectionEmbedding,
}


def register_embedding(name: str, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """Make ``model.embedding=name`` use ``fn`` (N x ... tensor -> N x d features)."""
    if name in ("classifier", "selfsup", "pixels", "projection"):
        raise MixganError(f"embedding '{name}' is built in and cannot be replaced")
    EMBEDDINGS[name] = lambda spec: FunctionEmbedding(spec, fn, name)


def get_embedding(name: str | Callable, spec: DataSpec) -> Embedding:
    """The embedding ``name`` (or a callable, or ``"module:function"``) for data described by ``spec``."""
    if callable(name):
        return FunctionEmbedding(spec, name, getattr(name, "__name__", "callable"))
    if name in EMBEDDINGS:
        return EMBEDDINGS[name](spec)
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            fn = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise MixganError(f"embedding '{name}': cannot import it ({exc})") from None
        if not callable(fn):
            raise MixganError(f"embedding '{name}' is not callable")
        return FunctionEmbedding(spec, fn, name)
    raise MixganError(f"unknown embedding '{name}' (choose from {', '.join(EMBEDDINGS)}, or module:function)")


__all__ = ["BACKENDS", "EMBEDDINGS", "METHODS", "THRESHOLD", "Embedding", "embed", "faiss_available",
           "get_embedding", "knn", "recall_at_k", "register_embedding", "resolve_method"]
