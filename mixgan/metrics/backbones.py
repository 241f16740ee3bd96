"""Feature extractors by name. A backbone maps images to (features, class probabilities).

``BACKBONES[name](dataset, weights=..., progress=...)`` returns a :class:`Backbone`; register
another extractor by adding a function with that signature.
"""
from __future__ import annotations

from typing import Callable

import torch

from ..errors import MixganError
from .classifier import Backbone, Progress, get_classifier


def _classifier(data, weights: str | None = None, progress: Progress | None = None) -> Backbone:
    if weights:
        raise MixganError("--weights applies to --backbone inception; the classifier backbone is trained and cached")
    return get_classifier(data, progress=progress)


def _inception(data, weights: str | None = None, progress: Progress | None = None) -> Backbone:
    from .inception import InceptionBackbone

    return InceptionBackbone(weights or "")


BACKBONES: dict[str, Callable[..., Backbone]] = {"classifier": _classifier, "inception": _inception}


def get_backbone(name: str, data, weights: str | None = None, progress: Progress | None = None,
                 device: torch.device | str = "cpu") -> Backbone:
    """The backbone ``name`` for a loaded Dataset, computing features on ``device``."""
    if name not in BACKBONES:
        raise MixganError(f"unknown backbone '{name}' (choose from {', '.join(BACKBONES)})")
    return BACKBONES[name](data, weights=weights, progress=progress).to(device)
