"""Classification accuracy score (Ravuri & Vinyals 2019) and conditional accuracy.

CAS trains a fresh classifier on generated, labelled samples and tests it on the real test split:
it is high only when the samples of each class are both right and varied enough to teach the class.
"""
from __future__ import annotations

import math

import torch

from ..errors import MixganError
from .classifier import Progress, accuracy, train_cnn


def classification_accuracy_score(x_fake: torch.Tensor, y_fake: torch.Tensor, x_test: torch.Tensor,
                                  y_test: torch.Tensor, num_classes: int, epochs: int | None = None,
                                  seed: int = 0, progress: Progress | None = None,
                                  device: torch.device | str = "cpu") -> float:
    """Test accuracy on real (x_test, y_test) of a SmallCNN trained on generated (x_fake, y_fake).

    ``epochs`` defaults to about 30,000 image presentations (at least 3 epochs).
    """
    if x_fake.shape[1:] != x_test.shape[1:]:
        raise MixganError(f"generated images {tuple(x_fake.shape[1:])} and real images {tuple(x_test.shape[1:])} "
                          "differ in shape")
    if y_test is None or len(y_test) == 0:
        raise MixganError("CAS needs a labelled real test split")
    epochs = epochs or max(3, math.ceil(30_000 / max(1, len(x_fake))))
    net = train_cnn(x_fake, torch.as_tensor(y_fake).long(), num_classes, epochs, seed=seed, progress=progress,
                    desc="CAS classifier", device=device)
    return accuracy(net, x_test, torch.as_tensor(y_test).long())


def conditional_accuracy(probs: torch.Tensor, requested_labels: torch.Tensor) -> float:
    """Share of samples that the reference classifier assigns to the class they were generated for."""
    p, y = torch.as_tensor(probs), torch.as_tensor(requested_labels).long()
    if p.ndim != 2 or len(p) != len(y):
        raise MixganError(f"conditional accuracy needs N x C probabilities and N labels, got {tuple(p.shape)} "
                          f"and {tuple(y.shape)}")
    if len(y) == 0:
        raise MixganError("conditional accuracy of no samples")
    return float((p.argmax(1) == y).double().mean())
