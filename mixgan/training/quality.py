"""Quality during training: FID, KID, precision and recall of the model's samples every
``train.eval_every`` steps, in the reference classifier's feature space.

The real side is a fixed-seed sample of ``train.eval_samples`` training images whose features are
computed once (and cached with the classifier); the fake side is as many samples drawn with a
fixed generator seed, so two evaluations differ only by the weights.
"""
from __future__ import annotations

import torch

from ..metrics.classifier import get_classifier, reference_features
from ..metrics.fid import fid
from ..metrics.kid import kid
from ..metrics.prdc import prdc
from ..metrics.suite import real_subset

QUALITY_KEYS = ("fid", "kid", "precision", "recall")


def can_evaluate(data) -> bool:
    """Whether a dataset has a reference classifier (labelled images), the space of these metrics."""
    return data.is_image and data.y_train is not None and data.num_classes >= 2


class TrainingEval:
    """``evaluate(model)`` -> {fid, kid, precision, recall} of ``n`` samples against ``n`` real images."""

    def __init__(self, data, n: int, device: torch.device | str, seed: int = 0, k: int = 5):
        self.n, self.seed, self.k = n, seed, k
        self.backbone = get_classifier(data, device=device)
        idx = real_subset(len(data.x_train), n, seed)
        self.real, _ = reference_features(self.backbone, data, "train", indices=idx)

    def __call__(self, model) -> dict[str, float]:
        gen = torch.Generator(model.device).manual_seed(self.seed)
        fake, _ = self.backbone.embed(model.sample(self.n, generator=gen).x)
        k = min(self.k, len(self.real) - 1, len(fake) - 1)
        scores = prdc(self.real, fake, k=k)
        return {"fid": fid(fake, self.real), "kid": kid(fake, self.real, subsets=1, subset_size=self.n)[0],
                "precision": scores["precision"], "recall": scores["recall"]}
