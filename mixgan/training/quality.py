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

QUALITY_KEYS = ("fid", "kid", "precision", "recall", "d_real", "d_fake")


def can_evaluate(data) -> bool:
    """Whether a dataset has a reference classifier (labelled images), the space of these metrics."""
    return data.is_image and data.y_train is not None and data.num_classes >= 2


@torch.no_grad()
def d_outputs(model, n: int, seed: int = 0) -> dict[str, float]:
    """D(real) and D(fake): the mean of sigmoid(D's real/fake logit) over ``n`` training images and
    as many of G's samples for them, every network in eval mode (no batch-norm statistics or
    spectral-norm power iterations change). Empty where the model does not hold its training set
    or its D has no single real/fake logit per image."""
    if model.x_train is None:
        return {}
    gen = torch.Generator(model.device).manual_seed(seed)
    idx = torch.randperm(len(model.x_train), generator=torch.Generator().manual_seed(seed))[:n].to(model.device)
    modes = [(m, m.training) for m in model.modules().values()]
    for m, _ in modes:
        m.eval()
    try:
        real = model.batch(idx)
        fake = model.fake(len(real.x), gen, grad=False, batch=real)
        out = {}
        for key, batch in (("d_real", real), ("d_fake", fake)):
            logit = model.d_logits(batch, train=False)
            logit = logit[0] if isinstance(logit, tuple) else logit
            if logit.numel() != len(batch.x):
                return {}
            out[key] = float(torch.sigmoid(logit.float()).mean())
        return out
    finally:
        for m, was in modes:
            m.train(was)


class TrainingEval:
    """``evaluate(model)`` -> {fid, kid, precision, recall} of ``n`` samples against ``n`` real images,
    and D(real), D(fake) (:func:`d_outputs`)."""

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
                "precision": scores["precision"], "recall": scores["recall"], **d_outputs(model, self.n, self.seed)}
