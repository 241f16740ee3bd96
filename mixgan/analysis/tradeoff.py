"""Quality-diversity control after training: scale every latent covariance by s^2 and measure."""
from __future__ import annotations

from ..errors import MixganError
from ..metrics.backbones import labelled
from ..metrics.suite import Evaluator, model_source
from ..models import GANModel

SWEEP_METRICS = ("quality", "diversity", "precision", "recall", "fid")


def tradeoff_sweep(model: GANModel, data, scales: list[float], n: int = 2000, seed: int = 0,
                   n_real: int = 10_000, progress=None) -> dict:
    """For each scale s: the quality and diversity scores (labelled data), precision, recall and FID
    of n samples, generated and reduced to features a batch at a time. The feature network and
    the real side (features, statistics, k-NN radii) are prepared once for every scale; the
    metrics' networks run on the model's device."""
    if not scales or any(s <= 0 for s in scales):
        raise MixganError(f"scales must be positive numbers, got {scales}")
    if not data.is_image:
        raise MixganError("the quality-diversity sweep needs an image dataset")
    metrics = ["fid", "prdc"] + (["qd"] if labelled(data) else [])
    ev = Evaluator(data, metrics, n_real=n_real, seed=seed, progress=progress, device=model.device)
    out: dict = {"scales": list(scales), "n": n, **ev.describe()}
    for s in scales:
        m = ev.score(model_source(model, n, seed, scale=s, by_class=False))
        for key in SWEEP_METRICS:
            if key in m:
                out.setdefault(key, []).append(m[key])
    return out


def scale_grid(model: GANModel, scale: float, columns: int = 10, seed: int = 0):
    """The progress grid's rows (one per Gaussian, or class) at latent scale ``scale``, with the
    same noise at every scale: (images, rows)."""
    import torch

    rows, choice = model.grid_rows()
    key, values = next(iter(choice.items()), (None, None))
    xs = []
    for r in range(rows):
        gen = torch.Generator(model.device).manual_seed(seed * 1000 + r)
        kwargs = {key: values[r]} if key else {}
        xs.append(model.sample(columns, scale=scale, generator=gen, **kwargs).x)
    return torch.cat(xs), rows
