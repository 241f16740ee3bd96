"""The whole evaluation of one set of samples against a dataset, as ``mixgan evaluate`` runs it.

An :class:`Evaluator` holds what every set of samples is compared with: the feature network
(``auto``: the dataset's reference classifier where it has labels, else the label-free encoder of
:mod:`mixgan.metrics.selfsup`), the metrics chosen from :data:`mixgan.metrics.registry.METRICS`,
and the real side reduced once (features of a fixed-seed subset of ``n_real`` training images,
cached per backbone, their statistics and k-NN radii). Samples arrive in batches
(:class:`SampleSource`): each batch becomes features and probabilities and is dropped, so memory
holds features, not images (a seeded subset of images is kept for the pairwise MS-SSIM). The same
scores are computed for two anchors: held-out real images and a constant mid-grey image.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch

from ..data.base import to_float
from ..errors import MixganError
from .backbones import get_backbone, labelled
from .classifier import Progress, get_classifier, reference_features
from .registry import COLLAPSE, SCORES, Inputs, Metric, RealSide, select

KEEP_PER_PAIR = 2  # images kept for the pairwise MS-SSIM: twice the number of pairs


def _image_batch(a: np.ndarray, shape: tuple[int, ...], source: str) -> torch.Tensor:
    """One batch of samples as float N x C x H x W in [-1, 1] (see :func:`as_images`)."""
    if a.dtype == np.uint8:
        t = to_float(torch.from_numpy(a))
    elif np.issubdtype(a.dtype, np.floating):
        t = torch.from_numpy(a.astype(np.float32))
        if len(t) and (not torch.isfinite(t).all()):
            raise MixganError(f"{source}: images contain NaN or infinite values")
        lo, hi = (float(t.min()), float(t.max())) if t.numel() else (0.0, 0.0)
        if lo < -1.01 or hi > 1.01:
            raise MixganError(f"{source}: float images must lie in [-1, 1] (found {lo:.3g}..{hi:.3g}); "
                              "give uint8 for [0, 255]")
        t.clamp_(-1, 1)
    else:
        raise MixganError(f"{source}: images must be float in [-1, 1] or uint8, got dtype {a.dtype}")
    c, h, w = shape
    if t.ndim == 3 and c == 1:
        t = t.unsqueeze(1)
    if t.ndim == 4 and tuple(t.shape[1:]) == (h, w, c) and tuple(t.shape[1:]) != (c, h, w):
        t = t.permute(0, 3, 1, 2)
    if t.ndim != 4 or tuple(t.shape[1:]) != (c, h, w):
        raise MixganError(f"{source}: images of shape {tuple(a.shape[1:])} do not match the dataset's {c}x{h}x{w}")
    return t.contiguous()


def as_images(x, shape: tuple[int, ...], source: str = "samples") -> torch.Tensor:
    """Samples as float N x C x H x W in [-1, 1]: from floats in [-1, 1] or uint8 in [0, 255],
    channels first or last, or N x H x W for one channel."""
    t = _image_batch(np.asarray(x), shape, source)
    if len(t) < 2:
        raise MixganError(f"{source}: need at least 2 samples, got {len(t)}")
    return t


def real_subset(n_total: int, n: int, seed: int) -> torch.Tensor:
    """The sorted fixed-seed choice of n of n_total rows (all rows if n >= n_total)."""
    if n >= n_total:
        return torch.arange(n_total)
    return torch.randperm(n_total, generator=torch.Generator().manual_seed(seed))[:n].sort().values


def sample_batch_size(shape: tuple[int, ...]) -> int:
    """Samples generated and embedded at a time: 1,000 up to 32x32 colour, fewer for larger images."""
    return max(100, min(1000, (1 << 22) // max(1, math.prod(shape))))


@dataclass
class SampleSource:
    """``n`` samples that arrive in batches: ``batches()`` yields (images or points, labels or None);
    ``has_labels``: whether every batch carries the class it was generated for."""

    n: int
    batches: Callable[[], Iterator[tuple[torch.Tensor, torch.Tensor | None]]]
    has_labels: bool = False


def array_source(x, data, labels=None, source: str = "samples", batch: int = 1000) -> SampleSource:
    """Samples held in an array (images, uint8 or float, or toy points), checked and converted a batch at a time."""
    a = np.asarray(x)
    if data.is_image:
        if len(a) < 2:
            raise MixganError(f"{source}: need at least 2 samples, got {len(a)}")
        convert = lambda part: _image_batch(part, data.shape, source)  # noqa: E731
    else:
        if a.ndim != 2 or a.shape[1] != data.x_train.shape[1]:
            raise MixganError(f"samples of shape {tuple(a.shape)} are not {data.x_train.shape[1]}-d points")
        if len(a) < 2:
            raise MixganError(f"need at least 2 samples, got {len(a)}")
        if not np.issubdtype(a.dtype, np.number) or not np.isfinite(a).all():
            raise MixganError(f"{source}: points contain NaN or infinite values")
        convert = lambda part: torch.as_tensor(part.astype(np.float32))  # noqa: E731
    y = None
    if labels is not None:
        y = torch.as_tensor(np.asarray(labels)).long().flatten()
        if len(y) != len(a):
            raise MixganError(f"{len(a)} samples but {len(y)} labels")
        if data.num_classes and (y.min() < 0 or y.max() >= data.num_classes):
            raise MixganError(f"labels must be in [0, {data.num_classes - 1}]")

    def batches():
        for i in range(0, len(a), batch):
            yield convert(a[i:i + batch]), (None if y is None else y[i:i + batch])

    return SampleSource(len(a), batches, y is not None)


def model_source(model, n: int, seed: int = 0, scale: float = 1.0, by_class: bool = True,
                 batch: int | None = None) -> SampleSource:
    """n samples of a model, generated a batch at a time. ``by_class``: a class-conditional model
    gives n/C samples of every class (class y from a generator seeded ``seed + y``), labelled;
    otherwise one generator seeded ``seed`` draws all n."""
    batch = batch or (sample_batch_size(model.spec.shape) if getattr(model.spec, "kind", "") == "image" else 1000)
    conditional = by_class and getattr(model, "class_conditional", False) and model.num_classes

    def batches():
        if conditional:
            c = model.num_classes
            for y in range(c):
                m = n // c + (1 if y < n % c else 0)
                if m:
                    gen = torch.Generator(model.device).manual_seed(seed + y)
                    for s in model.sample_batches(m, label=y, scale=scale, generator=gen, batch_size=batch):
                        yield s.x, torch.full((len(s.x),), y, dtype=torch.long)
        else:
            gen = torch.Generator(model.device).manual_seed(seed)
            for s in model.sample_batches(n, scale=scale, generator=gen, batch_size=batch):
                yield s.x, (s.label.long() if s.label is not None else None)

    return SampleSource(n, batches, bool(conditional))


class Evaluator:
    """The metrics of any number of sample sets against one dataset (see the module docstring).

    Networks run on ``device``; the metrics on their CPU outputs. ``has_labels``: the sample sets
    carry the class each sample was generated for (conditional accuracy, intra-FID, CAS).
    """

    def __init__(self, data, metrics=None, has_labels: bool = False, backbone: str | None = "auto",
                 weights: str | None = None, n_real: int = 10_000, k: int = 5, is_splits: int = 10,
                 pairs: int = 2000, seed: int = 0, progress: Progress | None = None,
                 device: torch.device | str = "cpu", kid_subsets: int = 10, kid_subset_size: int = 1000):
        if n_real < 2:
            raise MixganError(f"--n-real must be >= 2, got {n_real}")
        self.data, self.k, self.is_splits, self.pairs, self.seed = data, k, is_splits, pairs, seed
        self.kid_subsets, self.kid_subset_size, self.device, self.progress = kid_subsets, kid_subset_size, device, progress
        self.points = not data.is_image
        if self.points:
            available = {"features"} | ({"centers"} if data.centers is not None else set())
            self.metrics = select(metrics, available, points=True)
            self.bb = self.ref = None
        else:
            available = {"features", "images"}
            if labelled(data) or (backbone or "auto") == "inception":
                available.add("probs")
            if has_labels:
                available |= {"labels", "all_images"}
            self.metrics = select(metrics, available)
            self.bb = get_backbone(backbone, data, weights=weights, progress=progress, device=device)
            probs_needed = any("probs" in m.needs for m in self.metrics)
            # class probabilities: the reference classifier's (Inception's only where there is none)
            self.ref = self.bb if self.bb.name == "classifier" else (
                get_classifier(data, progress=progress, device=device) if probs_needed and labelled(data) else None)
        self.needs = set().union(*(m.needs for m in self.metrics))
        idx = real_subset(len(data.x_train), n_real, seed)
        self.real_index = idx
        if self.points:
            feats = data.x_train[idx].float()
        else:
            feats, _ = reference_features(self.bb, data, "train", indices=idx, progress=progress)
        labels = data.y_train[idx] if data.y_train is not None else None
        self.real = RealSide(feats, labels=labels)

    # ---- features of one sample set, a batch at a time ----------------------------------------
    def _probs(self, x: torch.Tensor, p: torch.Tensor) -> torch.Tensor | None:
        if "probs" not in self.needs:
            return None
        return p if self.ref is self.bb or self.ref is None else self.ref.probs(x)

    def inputs(self, source: SampleSource) -> Inputs:
        """The sample set reduced to what the chosen metrics need."""
        keep = real_subset(source.n, KEEP_PER_PAIR * self.pairs, self.seed) if "images" in self.needs else None
        feats, probs, kept, labels, everything, own = [], [], [], [], [], []
        start = 0
        for x, y in source.batches():
            if self.points:
                f, p = x.float(), None
            else:
                f, p_bb = self.bb.embed(x)
                p = self._probs(x, p_bb)
                if self.bb.name == "inception" and "probs" in self.needs:
                    own.append(p_bb)  # the Inception score in Inception's own classes
                if keep is not None:
                    rows = keep[(keep >= start) & (keep < start + len(x))] - start
                    kept.append(x[rows].clone())
                if "all_images" in self.needs:  # CAS trains on every sample: kept as uint8
                    everything.append(((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8))
            feats.append(f)
            if p is not None:
                probs.append(p)
            if y is not None:
                labels.append(y)
            start += len(x)
        if start < 2:
            raise MixganError(f"need at least 2 samples, got {start}")
        features = torch.cat(feats)
        p_all = torch.cat(probs) if probs else None
        inputs = self._pack(features, p_all, torch.cat(kept) if kept else None,
                            p_all[keep] if p_all is not None and keep is not None else None,
                            torch.cat(labels) if labels and source.has_labels else None,
                            torch.cat(everything) if everything else None)
        inputs.is_probs = torch.cat(own) if own else None
        return inputs

    def _pack(self, features, probs, images, image_probs, labels=None, all_images=None) -> Inputs:
        extra = {"device": self.device, "test": self.data}
        if self.points and self.data.centers is not None:
            extra["centers"] = (self.data.centers, self.data.std)
        return Inputs(self.real, features, probs, images, image_probs, labels, all_images, k=self.k, seed=self.seed,
                      pairs=self.pairs, is_splits=self.is_splits, kid_subsets=self.kid_subsets,
                      kid_subset_size=self.kid_subset_size, extra=extra)

    def _compute(self, inputs: Inputs, metrics: list[Metric], times: dict | None = None) -> dict:
        out: dict = {}
        for m in metrics:
            t = time.perf_counter()
            out.update(m.compute(inputs))
            if times is not None:
                times[m.name] = time.perf_counter() - t
        return out

    # ---- the public results ---------------------------------------------------------------------
    def describe(self) -> dict:
        """The feature network and the real side, for every output that holds scores."""
        out: dict = {"dataset": self.data.name, "n_real": len(self.real.features)}
        if self.points:
            out.update(backbone="none", feature_net="none: the points' own coordinates")
        else:
            out.update(backbone=self.bb.name, backbone_id=self.bb.id, feature_net=self.bb.describe(),
                       image_shape=list(self.data.shape))
            if self.bb.name == "classifier":
                out["classifier_accuracy"] = self.bb.accuracy
        return out

    def score(self, source: SampleSource) -> dict:
        """Every chosen metric of one sample set, with the feature network named and the time per stage."""
        times: dict[str, float] = {}
        t0 = time.perf_counter()
        inputs = self.inputs(source)
        times["features"] = time.perf_counter() - t0
        out = self.describe()
        out["n_fake"] = len(inputs.features)
        metrics = [m for m in self.metrics if not ("labels" in m.needs and inputs.labels is None)]
        out.update(self._compute(inputs, metrics, times))
        out["time_s"] = {key: round(v, 3) for key, v in times.items()}
        return out

    def anchors(self, n: int) -> dict[str, dict]:
        """The same scores for held-out real images (the test split, else training rows outside the
        real subset; at most ``n``) and for ``n`` copies of a constant image (mid-grey; for points,
        the training mean): what a perfect and a trivial generator get under the same measure."""
        metrics = [m for m in self.metrics if m.anchored]
        out: dict[str, dict] = {}
        held = self._held_out(n)
        if held is not None:
            out["held_out"] = {"n": len(held.features), **self._compute(held, metrics)}
        const = self._constant(n)
        out["constant"] = {"n": n, **self._compute(const, metrics)}
        return out

    def _held_out(self, n: int) -> Inputs | None:
        data = self.data
        if data.x_test is not None and len(data.x_test) >= 2:
            split, rows = "test", real_subset(len(data.x_test), n, self.seed)
        else:
            mask = torch.ones(len(data.x_train), dtype=torch.bool)
            mask[self.real_index] = False
            rows = mask.nonzero()[:, 0]
            if len(rows) < 2:
                return None
            split, rows = "train", rows[real_subset(len(rows), n, self.seed)]
        if self.points:
            x = (data.x_test if split == "test" else data.x_train)[rows].float()
            return self._pack(x, None, None, None)
        f, p_bb = reference_features(self.bb, data, split, indices=rows, progress=self.progress)
        p = p_bb
        if "probs" in self.needs and self.ref is not self.bb and self.ref is not None:
            p = reference_features(self.ref, data, split, indices=rows, progress=self.progress)[1]
        images = image_probs = None
        if "images" in self.needs:
            keep = real_subset(len(rows), KEEP_PER_PAIR * self.pairs, self.seed)
            images = data.images(split, rows[keep])
            image_probs = p[keep] if "probs" in self.needs else None
        inputs = self._pack(f, p if "probs" in self.needs else None, images, image_probs)
        inputs.is_probs = p_bb if self.bb.name == "inception" else None
        return inputs

    def _constant(self, n: int) -> Inputs:
        if self.points:
            return self._pack(self.data.x_train.float().mean(0, keepdim=True).expand(n, -1), None, None, None)
        grey = torch.zeros(1, *self.data.shape)
        f, p_bb = self.bb.embed(grey)
        p = self._probs(grey, p_bb)
        m = min(n, KEEP_PER_PAIR * self.pairs)
        inputs = self._pack(f.expand(n, -1), None if p is None else p.expand(n, -1),
                            grey.expand(m, -1, -1, -1), None if p is None else p.expand(m, -1))
        inputs.is_probs = p_bb.expand(n, -1) if self.bb.name == "inception" else None
        return inputs


def notes(result: dict) -> dict[str, str]:
    """Caveats of the scores in ``result``: a score that rates a collapsed generator high, and any
    score on which the constant anchor does at least as well as held-out real images."""
    out = {key: s.note for key, s in SCORES.items() if s.note and isinstance(result.get(key), (int, float))}
    anchors = result.get("anchors", {})
    held, const = anchors.get("held_out", {}), anchors.get("constant", {})
    for key, s in SCORES.items():
        a, b = held.get(key), const.get(key)
        if s.higher_better is None or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (a, b)):
            continue
        if (b >= a) if s.higher_better else (b <= a):
            out[key] = ("a constant image scores as well as held-out real images here: this score cannot tell"
                        + (f"; {s.note}" if s.note else ""))
    return out


def evaluate_samples(x, data, metrics=None, labels=None, backbone: str | None = "auto", weights: str | None = None,
                     n_real: int = 10_000, k: int = 5, is_splits: int = 10, pairs: int = 2000, seed: int = 0,
                     progress: Progress | None = None, device: torch.device | str = "cpu",
                     anchors: bool = False) -> dict:
    """All requested metrics of samples ``x`` (images or toy points: an array, or a
    :class:`SampleSource`) against a loaded Dataset; networks (backbone, classifiers) run on
    ``device``, the metrics on their CPU outputs.

    ``labels`` are the classes the samples were generated for; with them, conditional accuracy and
    intra-FID are added, and CAS when asked for (or by default). ``anchors``: also score held-out
    real images and a constant image (``result["anchors"]``) and add ``result["notes"]``.
    """
    source = x if isinstance(x, SampleSource) else array_source(x, data, labels)
    ev = Evaluator(data, metrics, has_labels=source.has_labels, backbone=backbone, weights=weights, n_real=n_real,
                   k=k, is_splits=is_splits, pairs=pairs, seed=seed, progress=progress, device=device)
    out = ev.score(source)
    if anchors:
        t = time.perf_counter()
        out["anchors"] = ev.anchors(out["n_fake"])
        out["time_s"]["anchors"] = round(time.perf_counter() - t, 3)
    note = notes(out)
    if note:
        out["notes"] = note
    return out


__all__ = ["COLLAPSE", "Evaluator", "SampleSource", "array_source", "as_images", "evaluate_samples", "model_source",
           "notes", "real_subset"]
