"""Every metric, once: what it is called, what it needs, which way is better, how it is computed.

``METRICS`` maps the name ``--metrics`` selects to a :class:`Metric`. Its ``compute`` is a pure
function of an :class:`Inputs` (features, class probabilities, kept images, labels and the real
side's reduced statistics) to a dict of numbers; ``scores`` lists those numbers with their
display name and direction. ``mixgan evaluate``, quality during training, the latent-scale sweep,
the report and the explorer read names and directions from here, so adding a metric is one entry
in ``METRICS``.

What a metric needs:

- ``features``: the generated samples' features in the feature network's space (and the real ones);
- ``probs``: class probabilities of the samples (the reference classifier; labelled data only);
- ``images``: the generated images themselves (a seeded subset is kept while streaming);
- ``labels``: the class each sample was generated for (class-conditional samples);
- ``all_images``: every generated image (CAS trains a classifier on them);
- ``centers``: a toy mixture's known modes (points, not images).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from ..errors import MixganError
from .fid import frechet_distance, feature_stats, intra_fid
from .inception_score import inception_score
from .kid import kid
from .prdc import prdc
from .quality_diversity import quality_diversity

COLLAPSE = "rates a collapsed generator high: read it with recall and coverage"


@dataclass(frozen=True)
class Score:
    """One number a metric gives: its key in the outputs, its display name, whether higher is
    better (None: neither, a spread or a count), and a caveat printed beside it."""

    key: str
    display: str
    higher_better: bool | None
    note: str = ""


@dataclass
class RealSide:
    """The real data a metric compares with, reduced once: features (and probabilities, labels),
    their mean and covariance, and k-NN radii per k, computed on first use and reused for every
    set of samples scored against them (the sweep's scales, the anchors)."""

    features: torch.Tensor
    probs: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    _stats: tuple | None = field(default=None, repr=False)
    _radii: dict = field(default_factory=dict, repr=False)

    @property
    def stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._stats is None:
            self._stats = feature_stats(self.features)
        return self._stats

    def radii(self, k: int) -> torch.Tensor:
        from .prdc import knn_radii

        if k not in self._radii:
            self._radii[k] = knn_radii(self.features.float(), k)
        return self._radii[k]


@dataclass
class Inputs:
    """What one set of samples brings to the metrics. ``images`` is a seeded subset of the samples
    (for pairwise MS-SSIM); ``all_images`` every sample (uint8 or float), only where a metric needs them."""

    real: RealSide
    features: torch.Tensor | None = None
    probs: torch.Tensor | None = None
    images: torch.Tensor | None = None
    image_probs: torch.Tensor | None = None  # probabilities of ``images``
    labels: torch.Tensor | None = None
    all_images: torch.Tensor | None = None
    k: int = 5
    seed: int = 0
    pairs: int = 2000
    is_splits: int = 10
    kid_subsets: int = 10
    kid_subset_size: int = 1000
    is_probs: torch.Tensor | None = None  # the backbone's own class probabilities, where it has other classes
    extra: dict = field(default_factory=dict)  # data-dependent context: toy centres, CAS's test split


def _fid(i: Inputs) -> dict:
    return {"fid": frechet_distance(*feature_stats(i.features), *i.real.stats)}


def _kid(i: Inputs) -> dict:
    mean, std = kid(i.features, i.real.features, subsets=i.kid_subsets, subset_size=i.kid_subset_size, seed=i.seed)
    return {"kid": mean, "kid_std": std}


def _is(i: Inputs) -> dict:
    # samples may come ordered by class: shuffle so that no split holds one class only
    probs = i.is_probs if i.is_probs is not None else i.probs
    order = torch.randperm(len(probs), generator=torch.Generator().manual_seed(i.seed))
    mean, std = inception_score(probs[order], splits=min(i.is_splits, len(probs)))
    return {"is": mean, "is_std": std}


def _prdc(i: Inputs) -> dict:
    k = min(i.k, len(i.real.features) - 1, len(i.features) - 1)
    return {"k": k, **prdc(i.real.features, i.features, k=k, real_radii=i.real.radii(k))}


def _qd(i: Inputs) -> dict:
    from .quality_diversity import inter_diversity, quality_score

    out = quality_diversity(i.images, i.image_probs, pairs=i.pairs, seed=i.seed)
    # quality and d_inter over every sample, the pairwise factor over the kept subset
    out["quality"], inter = quality_score(i.probs), inter_diversity(i.probs)
    out["diversity"] = (max(out["diversity_intra"], 0.0) * inter) ** 0.5
    out["diversity_inter"] = inter
    return out


def _conditional(i: Inputs) -> dict:
    from .cas import conditional_accuracy

    out = {"conditional_accuracy": conditional_accuracy(i.probs, i.labels)}
    if i.real.labels is not None:
        try:
            out["intra_fid"] = intra_fid(i.features, i.labels, i.real.features, i.real.labels)
        except MixganError:
            out["intra_fid"] = None  # no class with enough samples on both sides
    return out


def _cas(i: Inputs) -> dict:
    from .cas import classification_accuracy_score

    test = i.extra["test"]
    return {"cas": classification_accuracy_score(i.all_images, i.labels, test.images("test"), test.y_test,
                                                 test.num_classes, seed=i.seed, device=i.extra.get("device", "cpu"))}


def _modes(i: Inputs) -> dict:
    from .toy import mode_stats

    centers, std = i.extra["centers"]
    stats = mode_stats(i.features, centers, std)
    return {"modes": stats["modes"], "high_quality": stats["high_quality"], "kl": stats["kl"],
            "modes_total": len(centers)}


@dataclass(frozen=True)
class Metric:
    """A metric: ``name`` (what ``--metrics`` selects), ``display``, ``needs`` (see the module
    docstring), the ``scores`` it gives and ``compute(Inputs) -> dict``. ``default``: computed when
    no metric is named; ``always``: computed whenever its needs are met; ``training``: the score keys
    measured during training; ``anchored``: scored on the anchors (held-out real, a constant image)
    as well; ``points``: also defined on toy points (features are the coordinates)."""

    name: str
    display: str
    needs: frozenset
    scores: tuple[Score, ...]
    compute: Callable[[Inputs], dict]
    default: bool = True
    always: bool = False
    training: tuple[str, ...] = ()
    anchored: bool = True
    points: bool = False


def _m(name, display, needs, scores, compute, **kw) -> Metric:
    return Metric(name, display, frozenset(needs), tuple(Score(*s) for s in scores), compute, **kw)


METRICS: dict[str, Metric] = {m.name: m for m in [
    _m("modes", "modes of a toy mixture", ["features", "centers"],
       [("modes", "modes covered", True), ("high_quality", "high-quality share", True),
        ("kl", "KL from uniform over modes", False)], _modes, points=True),
    _m("fid", "Fréchet distance", ["features"], [("fid", "FID", False)], _fid, training=("fid",)),
    _m("kid", "kernel distance (unbiased MMD²)", ["features"],
       [("kid", "KID", False), ("kid_std", "KID (std over subsets)", None)], _kid, training=("kid",)),
    _m("is", "Inception score", ["probs"],
       [("is", "Inception score", True), ("is_std", "Inception score (std over splits)", None)], _is),
    _m("prdc", "precision, recall, density, coverage", ["features"],
       [("precision", "precision", True, COLLAPSE), ("recall", "recall", True),
        ("density", "density", True, COLLAPSE), ("coverage", "coverage", True)], _prdc,
       training=("precision", "recall"), points=True),
    _m("qd", "quality and diversity scores", ["probs", "images"],
       [("quality", "quality score", True, "classifier confidence: rates a collapsed generator high: read it with diversity"),
        ("diversity", "diversity score", True), ("diversity_intra", "diversity within classes", True),
        ("diversity_inter", "diversity across classes", True)], _qd),
    _m("conditional", "conditional accuracy and intra-class FID", ["probs", "labels", "features"],
       [("conditional_accuracy", "conditional accuracy", True), ("intra_fid", "intra-class FID", False)],
       _conditional, default=False, always=True, anchored=False),
    _m("cas", "classification accuracy score", ["labels", "all_images"], [("cas", "CAS", True)], _cas,
       anchored=False),
]}

SCORES: dict[str, Score] = {s.key: s for m in METRICS.values() for s in m.scores}
TRAINING_KEYS: tuple[str, ...] = tuple(k for m in METRICS.values() for k in m.training)


def display_names() -> dict[str, str]:
    """Every score key -> its display name (the report's and the CLI's labels)."""
    return {key: s.display for key, s in SCORES.items()}


def select(names, available: set[str], points: bool = False) -> list[Metric]:
    """The metrics named (a comma list or a sequence; None: the defaults) among those whose needs
    ``available`` meets, plus the ``always`` ones that can run; one-line error for a name that is
    unknown or cannot run on this data."""
    usable = [m for m in METRICS.values() if (m.points or not points) and m.needs <= available]
    if names is None:
        chosen = [m for m in usable if m.default]
    else:
        names = [n.strip() for n in (names.split(",") if isinstance(names, str) else names) if n.strip()]
        known = [m.name for m in METRICS.values() if (m.points or not points) and not m.always]
        for n in names:
            if n not in known:
                raise MixganError(f"unknown metric '{n}' for this data (choose from {', '.join(known)})")
            m = METRICS[n]
            if not m.needs <= available:
                missing = dict.fromkeys(NEED_TEXT.get(x, x) for x in sorted(m.needs - available))
                raise MixganError(f"{n} needs {' and '.join(missing)}")
        if not names:
            raise MixganError(f"no metric named (choose from {', '.join(known)})")
        chosen = [METRICS[n] for n in dict.fromkeys(names)]
    return chosen + [m for m in usable if m.always and m not in chosen]


NEED_TEXT = {"probs": "class probabilities (labelled data for the reference classifier)",
             "labels": "labelled samples (an npz with a 'label' array, or a class-conditional run)",
             "all_images": "labelled samples (an npz with a 'label' array, or a class-conditional run)",
             "centers": "a toy mixture with known modes", "images": "images", "features": "features"}
