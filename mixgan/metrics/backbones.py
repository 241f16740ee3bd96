"""Feature extractors by name. A backbone maps images to (features, class probabilities).

``BACKBONES[name](dataset, weights=..., progress=...)`` returns a :class:`Backbone`; register
another extractor by adding a function with that signature. ``auto`` (the default) is the
reference classifier where the data has class labels, else the label-free ``selfsup`` encoder.
"""
from __future__ import annotations

from typing import Callable

import torch

from ..errors import MixganError
from .classifier import Backbone, Progress, get_classifier


def labelled(data) -> bool:
    """Whether a dataset can have a reference classifier: labelled images of at least two classes."""
    return data.is_image and data.y_train is not None and data.num_classes >= 2


def _classifier(data, weights: str | None = None, progress: Progress | None = None) -> Backbone:
    if weights:
        raise MixganError("--weights applies to --backbone inception; the classifier backbone is trained and cached")
    return get_classifier(data, progress=progress)


def _selfsup(data, weights: str | None = None, progress: Progress | None = None) -> Backbone:
    from .selfsup import get_selfsup

    if weights:
        raise MixganError("--weights applies to --backbone inception; the selfsup backbone is trained and cached")
    return get_selfsup(data)


def _inception(data, weights: str | None = None, progress: Progress | None = None) -> Backbone:
    from .inception import InceptionBackbone

    return InceptionBackbone(weights or "")


def _auto(data, weights: str | None = None, progress: Progress | None = None) -> Backbone:
    return (_classifier if labelled(data) else _selfsup)(data, weights=weights, progress=progress)


BACKBONES: dict[str, Callable[..., Backbone]] = {"auto": _auto, "classifier": _classifier, "selfsup": _selfsup,
                                                 "inception": _inception}


def get_backbone(name: str | None, data, weights: str | None = None, progress: Progress | None = None,
                 device: torch.device | str = "cpu") -> Backbone:
    """The backbone ``name`` (None: ``auto``) for a loaded Dataset, computing features on ``device``."""
    name = name or "auto"
    if name not in BACKBONES:
        raise MixganError(f"unknown backbone '{name}' (choose from {', '.join(BACKBONES)})")
    return BACKBONES[name](data, weights=weights, progress=progress).to(device)
