"""The whole evaluation of one set of samples against a dataset, as ``mixgan evaluate`` runs it.

Feature metrics (FID, IS, precision/recall, density/coverage) run in the space of a backbone (by
default the dataset's reference classifier); the quality/diversity scores, conditional accuracy
and CAS always use the reference classifier, whose classes are the dataset's. Real features come
from a fixed-seed subset of ``n_real`` training images, cached per backbone.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from ..errors import MixganError
from .backbones import get_backbone
from .cas import classification_accuracy_score, conditional_accuracy
from .classifier import Progress, get_classifier, reference_features
from .fid import fid, intra_fid
from .inception_score import inception_score
from .kid import kid
from .prdc import prdc
from .quality_diversity import quality_diversity
from .toy import mode_stats

IMAGE_METRICS = ("fid", "kid", "is", "prdc", "qd", "cas")
POINT_METRICS = ("modes", "prdc")
DEFAULT_IMAGE_METRICS = ("fid", "kid", "is", "prdc", "qd")


def as_images(x, shape: tuple[int, ...], source: str = "samples") -> torch.Tensor:
    """Samples as float N x C x H x W in [-1, 1]: from floats in [-1, 1] or uint8 in [0, 255],
    channels first or last, or N x H x W for one channel."""
    a = np.asarray(x)
    if a.dtype == np.uint8:
        t = torch.from_numpy(a.astype(np.float32)) / 127.5 - 1.0
    elif np.issubdtype(a.dtype, np.floating):
        t = torch.from_numpy(a.astype(np.float32))
        if len(t) and (not torch.isfinite(t).all()):
            raise MixganError(f"{source}: images contain NaN or infinite values")
        lo, hi = (float(t.min()), float(t.max())) if t.numel() else (0.0, 0.0)
        if lo < -1.01 or hi > 1.01:
            raise MixganError(f"{source}: float images must lie in [-1, 1] (found {lo:.3g}..{hi:.3g}); "
                              "give uint8 for [0, 255]")
        t = t.clamp(-1, 1)
    else:
        raise MixganError(f"{source}: images must be float in [-1, 1] or uint8, got dtype {a.dtype}")
    c, h, w = shape
    if t.ndim == 3 and c == 1:
        t = t.unsqueeze(1)
    if t.ndim == 4 and tuple(t.shape[1:]) == (h, w, c) and tuple(t.shape[1:]) != (c, h, w):
        t = t.permute(0, 3, 1, 2)
    if t.ndim != 4 or tuple(t.shape[1:]) != (c, h, w):
        raise MixganError(f"{source}: images of shape {tuple(a.shape[1:])} do not match the dataset's {c}x{h}x{w}")
    if len(t) < 2:
        raise MixganError(f"{source}: need at least 2 samples, got {len(t)}")
    return t.contiguous()


def real_subset(n_total: int, n: int, seed: int) -> torch.Tensor:
    """The sorted fixed-seed choice of n of n_total rows (all rows if n >= n_total)."""
    if n >= n_total:
        return torch.arange(n_total)
    return torch.randperm(n_total, generator=torch.Generator().manual_seed(seed))[:n].sort().values


def _metric_list(metrics, allowed, default) -> list[str]:
    if metrics is None:
        return list(default)
    names = [m.strip() for m in (metrics.split(",") if isinstance(metrics, str) else metrics) if m.strip()]
    bad = [m for m in names if m not in allowed]
    if bad or not names:
        raise MixganError(f"unknown metric '{bad[0] if bad else ''}' for this data (choose from {', '.join(allowed)})")
    return names


def evaluate_points(x, data, metrics=None, n_real: int = 10_000, k: int = 5, seed: int = 0) -> dict:
    """Points: modes covered, high-quality share and KL from uniform on the toy mixtures, and
    precision/recall/density/coverage on the raw coordinates."""
    allowed = POINT_METRICS if data.centers is not None else ("prdc",)  # modes need known mixture centres
    names = _metric_list(metrics, allowed, allowed)
    pts = torch.as_tensor(np.asarray(x, dtype=np.float32))
    if pts.ndim != 2 or pts.shape[1] != data.x_train.shape[1]:
        raise MixganError(f"samples of shape {tuple(pts.shape)} are not {data.x_train.shape[1]}-d points")
    if len(pts) < 2:
        raise MixganError(f"need at least 2 samples, got {len(pts)}")
    out: dict = {"dataset": data.name, "n_fake": len(pts), "backbone": "none"}
    if "modes" in names:
        stats = mode_stats(pts, data.centers, data.std)
        out.update(modes=stats["modes"], high_quality=stats["high_quality"], kl=stats["kl"],
                   modes_total=len(data.centers))
    if "prdc" in names:
        real = data.x_train[real_subset(len(data.x_train), n_real, seed)]
        out["n_real"] = len(real)
        out.update(prdc(real, pts, k=k))
    return out


def evaluate_samples(x, data, metrics=None, labels=None, backbone: str = "classifier", weights: str | None = None,
                     n_real: int = 10_000, k: int = 5, is_splits: int = 10, pairs: int = 2000, seed: int = 0,
                     progress: Progress | None = None, device: torch.device | str = "cpu") -> dict:
    """All requested metrics of samples ``x`` (images or toy points) against a loaded Dataset;
    networks (backbone, classifiers) run on ``device``, the metrics on their CPU outputs.

    ``labels`` are the classes the samples were generated for; with them, conditional accuracy and
    intra-FID are added, and CAS when asked for (or by default).
    """
    if not data.is_image:
        return evaluate_points(x, data, metrics, n_real=n_real, k=k, seed=seed)
    default = [m for m in DEFAULT_IMAGE_METRICS if m != "qd" or data.y_train is not None]
    default += ["cas"] if labels is not None else []
    names = _metric_list(metrics, IMAGE_METRICS, default)
    imgs = as_images(x, data.shape)
    if labels is not None:
        labels = torch.as_tensor(np.asarray(labels)).long().flatten()
        if len(labels) != len(imgs):
            raise MixganError(f"{len(imgs)} samples but {len(labels)} labels")
        if data.num_classes and (labels.min() < 0 or labels.max() >= data.num_classes):
            raise MixganError(f"labels must be in [0, {data.num_classes - 1}]")
    if "cas" in names and labels is None:
        raise MixganError("cas needs labelled samples (an npz with a 'label' array, or a class-conditional run)")
    if n_real < 2:
        raise MixganError(f"--n-real must be >= 2, got {n_real}")
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    bb = get_backbone(backbone, data, weights=weights, progress=progress, device=device)
    idx = real_subset(len(data.x_train), n_real, seed)
    real_f, real_p = reference_features(bb, data, "train", indices=idx, progress=progress)
    fake_f, fake_p = bb.embed(imgs)
    times["features"] = time.perf_counter() - t0
    out: dict = {"dataset": data.name, "n_real": len(real_f), "n_fake": len(imgs), "backbone": bb.name,
                 "backbone_id": bb.id, "image_shape": list(data.shape)}  # the real data's (and classifier's) input
    if bb.name == "classifier":
        out["classifier_accuracy"] = bb.accuracy

    def timed(name, fn):
        t = time.perf_counter()
        fn()
        times[name] = time.perf_counter() - t

    if "fid" in names:
        timed("fid", lambda: out.update(fid=fid(fake_f, real_f)))
    if "kid" in names:
        def _kid():
            out["kid"], out["kid_std"] = kid(fake_f, real_f, subsets=10, subset_size=1000, seed=seed)
        timed("kid", _kid)
    if "is" in names:
        def _is():  # samples may come ordered by class: shuffle so that no split holds one class only
            order = torch.randperm(len(fake_p), generator=torch.Generator().manual_seed(seed))
            out["is"], out["is_std"] = inception_score(fake_p[order], splits=min(is_splits, len(fake_p)))
        timed("is", _is)
    if "prdc" in names:
        out["k"] = k
        timed("prdc", lambda: out.update(prdc(real_f, fake_f, k=min(k, len(real_f) - 1, len(fake_f) - 1))))
    needs_cls = "qd" in names or labels is not None
    ref = bb if bb.name == "classifier" else (get_classifier(data, progress=progress, device=device) if needs_cls else None)
    ref_p = fake_p if ref is bb else (ref.probs(imgs) if ref is not None else None)
    if "qd" in names:
        timed("qd", lambda: out.update(quality_diversity(imgs, ref_p, pairs=pairs, seed=seed)))
    if labels is not None:
        out["conditional_accuracy"] = conditional_accuracy(ref_p, labels)
        real_labels = data.y_train[idx] if data.y_train is not None else None
        if real_labels is not None:
            try:
                timed("intra_fid", lambda: out.update(intra_fid=intra_fid(fake_f, labels, real_f, real_labels)))
            except MixganError:
                out["intra_fid"] = None  # no class with enough samples on both sides
    if "cas" in names:
        timed("cas", lambda: out.update(cas=classification_accuracy_score(
            imgs, labels, data.images("test"), data.y_test, data.num_classes, seed=seed, progress=progress, device=device)))
    out["time_s"] = {key: round(v, 3) for key, v in times.items()}
    return out
