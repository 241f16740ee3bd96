"""Quality during training: FID, KID, precision and recall of the model's samples every
``train.eval_every`` steps, in the metrics' feature space (the reference classifier where the data
has labels, else the label-free encoder), through the one metric registry.

The real side is a fixed-seed sample of ``train.eval_samples`` training images whose features are
computed once (and cached with the feature network); the fake side is as many samples drawn with a
fixed generator seed, so two evaluations differ only by the weights.
"""
from __future__ import annotations

import torch

from ..metrics.registry import TRAINING_KEYS, METRICS
from ..metrics.suite import Evaluator, model_source

QUALITY_KEYS = (*TRAINING_KEYS, "d_real", "d_fake")


def can_evaluate(data) -> bool:
    """Whether a dataset has a feature space for these metrics: any images (labelled or not)."""
    return data.is_image


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
    """``evaluate(model)`` -> the registry's training scores (FID, KID over one subset, precision,
    recall) of ``n`` samples against ``n`` real images, D(real), D(fake) (:func:`d_outputs`) and
    ``feature_net``, the id of the feature network they were measured in."""

    def __init__(self, data, n: int, device: torch.device | str, seed: int = 0, k: int = 5):
        self.n, self.seed = n, seed
        metrics = [m.name for m in METRICS.values() if m.training]
        self.evaluator = Evaluator(data, metrics, n_real=n, k=k, seed=seed, device=device, kid_subsets=1,
                                   kid_subset_size=n)
        self.feature_net = self.evaluator.describe()["backbone_id"]

    def __call__(self, model) -> dict:
        scores = self.evaluator.score(model_source(model, self.n, self.seed, by_class=False))
        return {**{k: scores[k] for k in TRAINING_KEYS}, **d_outputs(model, self.n, self.seed),
                "feature_net": self.feature_net}
