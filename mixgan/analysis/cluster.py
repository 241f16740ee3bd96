"""Unsupervised clustering with a GM-GAN (Ben-Yosef & Weinshall 2018, section 5).

Two methods assign a real image to a Gaussian. ``encoder``: the run's encoder E, trained with G
(``encoder.enabled = true``; not in the paper), names it directly. ``classifier`` (the paper's):
a classifier is trained on generated pairs (G(z_k), k), so that it learns which Gaussian each
kind of image comes from; every real image is then assigned to its predicted Gaussian. Where
K > N, each Gaussian is merged into the class it mostly captures on the training split
(majority vote: the only place labels are used, as in the paper); the split is then scored
against its true labels, beside k-means on the same images' pixels.

The headline accuracy is one-to-one for the Gaussians and k-means alike (Hungarian matching: each
class is claimed by at most one cluster, so K > N Gaussians cannot all score), printed beside the
majority-class baseline (every image put in the largest class). The merged figure is kept as
``accuracy_many_to_one``, named as such. Gaussians that make only some of the classes are a
collapse, reported by a :class:`MixganWarning`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

import warnings

from ..errors import MixganError, MixganWarning
from ..metrics.classifier import get_classifier, run_batches, train_cnn
from ..metrics.clustering import cluster_scores, hungarian_mapping, majority_merge
from ..models import GANModel


@dataclass
class ClusterResult:
    gaussian: np.ndarray  # predicted Gaussian of every image
    pred: np.ndarray  # predicted class (merged or Hungarian-matched Gaussian)
    label: np.ndarray | None
    scores: dict = field(default_factory=dict)
    kmeans: dict = field(default_factory=dict)
    gaussian_to_class: list[int] = field(default_factory=list)
    purity: dict = field(default_factory=dict)  # see gaussian_purity


class _PointClassifier(nn.Module):
    """For 2-D data: a small MLP with the (features, logits) interface of SmallCNN."""

    def __init__(self, dim: int, classes: int, width: int = 64):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(dim, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU())
        self.head = nn.Linear(width, classes)

    def forward(self, x):
        h = self.body(x.flatten(1))
        return h, self.head(h)


def _train_points(x: torch.Tensor, y: torch.Tensor, classes: int, seed: int, steps: int = 800,
                  device: torch.device | str = "cpu") -> nn.Module:
    torch.manual_seed(seed)
    net = _PointClassifier(x[0].numel(), classes).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(seed)
    x, y = x.to(device), y.to(device)
    for _ in range(steps):
        idx = torch.randint(len(x), (256,), generator=gen).to(device)
        loss = F.cross_entropy(net(x[idx])[1], y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


def gaussian_classifier(model: GANModel, per_component: int = 1000, epochs: int = 3, seed: int = 0,
                        progress=None, device: torch.device | str | None = None) -> nn.Module:
    """A classifier of "which Gaussian made this", trained on generated pairs (G(z_k), k), on
    ``device`` (default: the model's)."""
    if not model.has_components:
        raise MixganError(f"model '{model.name}' has no Gaussian components to cluster with")
    K = model.components
    gen = torch.Generator(model.device).manual_seed(seed)
    xs = [model.sample(per_component, component=k, generator=gen).x for k in range(K)]
    x = torch.cat(xs)
    y = torch.arange(K).repeat_interleave(per_component)
    device = model.device if device is None else torch.device(device)
    if x.ndim == 4:
        return train_cnn(x, y, K, epochs, seed=seed, progress=progress, desc="gaussian classifier", device=device)
    return _train_points(x, y, K, seed, device=device)


def predict_gaussian(classifier: nn.Module, x: torch.Tensor) -> np.ndarray:
    """Each row's Gaussian, computed on the classifier's device."""
    return run_batches(classifier, x)[1].argmax(1).numpy()


def gaussian_purity(model: GANModel, data, per_component: int = 200, seed: int = 0, progress=None) -> dict:
    """What each Gaussian generates, by the reference classifier: a diagnosis of clustering errors.

    Clustering fails in two different ways: a Gaussian that mixes classes (low purity), or
    classes that no Gaussian makes (low coverage, several Gaussians share one class). Returns
    ``gaussian_class`` (each Gaussian's majority class), ``gaussian_purity`` (the share of its
    samples in that class), their mean ``purity`` and ``classes_covered`` (distinct majority classes).
    """
    reference = get_classifier(data, progress=progress, device=model.device)
    gen = torch.Generator(model.device).manual_seed(seed)
    classes, purities = [], []
    for k in range(model.components):
        pred = reference.probs(model.sample(per_component, component=k, generator=gen).x).argmax(1)
        counts = torch.bincount(pred, minlength=data.num_classes)
        classes.append(int(counts.argmax()))
        purities.append(float(counts.max()) / per_component)
    return {"purity": float(np.mean(purities)), "classes_covered": len(set(classes)),
            "gaussian_class": classes, "gaussian_purity": [round(p, 4) for p in purities]}


METHODS = ("encoder", "classifier")


def resolve_method(model: GANModel, method: str | None) -> str:
    """The clustering method: ``encoder`` where the run has one, else ``classifier``; refuse
    ``encoder`` for a run without one."""
    if not model.has_components:
        raise MixganError(f"model '{model.name}' has no Gaussian components to cluster with")
    has_encoder = getattr(model, "E", None) is not None
    if method is None:
        return "encoder" if has_encoder else "classifier"
    if method not in METHODS:
        raise MixganError(f"method must be one of {', '.join(METHODS)}, got '{method}'")
    if method == "encoder" and not has_encoder:
        raise MixganError("this run has no encoder (train with --set encoder.enabled=true); use --method classifier")
    return method


def gaussian_assigner(model: GANModel, method: str | None = None, per_component: int = 1000, epochs: int = 3,
                      seed: int = 0, progress=None, device: torch.device | str | None = None):
    """A function images -> the Gaussian of each (numpy), by ``method`` (see :func:`resolve_method`);
    the encoder runs on the model's device, the classifier is trained on ``device`` (default: the model's)."""
    if resolve_method(model, method) == "encoder":
        return lambda x: model.encode(torch.as_tensor(x).float())[0].argmax(1).numpy()
    classifier = gaussian_classifier(model, per_component, epochs, seed, progress, device=device)
    return lambda x: predict_gaussian(classifier, torch.as_tensor(x).float())


def kmeans_scores(x: torch.Tensor, label: np.ndarray, n_clusters: int, seed: int = 0) -> dict:
    from sklearn.cluster import KMeans

    km = KMeans(n_clusters=n_clusters, n_init=10, random_state=seed).fit(x.flatten(1).numpy())
    return cluster_scores(km.labels_, label)


def class_names(data) -> list[str]:
    """The dataset's class names where it carries them, else the class numbers as text."""
    names = tuple(getattr(data, "class_names", ()) or ())
    return [str(n) for n in names] if len(names) == data.num_classes else [str(c) for c in range(data.num_classes)]


def majority_baseline(label: np.ndarray) -> float:
    """The accuracy of putting every item in the most frequent class."""
    return float(np.bincount(label).max() / len(label)) if len(label) else float("nan")


def cluster_run(model: GANModel, data, split: str = "test", per_component: int = 1000, epochs: int = 3,
                seed: int = 0, progress=None, method: str | None = None) -> ClusterResult:
    """Cluster a dataset split with a trained mixture model and score it against the labels:
    one-to-one accuracy, NMI and ARI, the majority-class baseline, k-means with one cluster per
    class, and where K > N the many-to-one accuracy of Gaussians merged into classes."""
    if split not in ("train", "test"):
        raise MixganError(f"split must be 'train' or 'test', got '{split}'")
    x = data.images(split)
    label = data.y_train if split == "train" else data.y_test
    assign = gaussian_assigner(model, method, per_component, epochs, seed, progress)
    gaussian = assign(x)
    if label is None:
        return ClusterResult(gaussian, gaussian, None)
    label = label.numpy()
    K, N = model.components, data.num_classes
    scores = cluster_scores(gaussian, label)  # one-to-one: Hungarian matching of Gaussians to classes
    scores["majority_baseline"] = majority_baseline(label)
    if K > N:
        if data.y_train is None:
            raise MixganError("merging Gaussians into classes needs the training split's labels")
        train_g = gaussian if split == "train" else assign(data.images("train"))
        mapping = majority_merge(train_g, data.y_train.numpy(), K)
        pred = mapping[gaussian]
        scores["accuracy_many_to_one"] = float((pred == label).mean())  # merged labels are classes already
    else:
        match = hungarian_mapping(gaussian, label)
        mapping = np.array([match.get(k, -1) for k in range(K)])
        pred = mapping[gaussian]
    purity = gaussian_purity(model, data, seed=seed, progress=progress) if data.is_image else {}
    kmeans = kmeans_scores(x, label, N, seed)
    if purity and purity["classes_covered"] < N:
        warnings.warn(MixganWarning(f"collapse: the {K} Gaussians make only {purity['classes_covered']} of the "
                                    f"{N} classes (by the reference classifier)"), stacklevel=2)
    if scores["accuracy"] <= scores["majority_baseline"]:
        warnings.warn(MixganWarning(f"one-to-one accuracy {scores['accuracy']:.3f} is no better than putting every "
                                    f"image in the largest class ({scores['majority_baseline']:.3f})"), stacklevel=2)
    return ClusterResult(gaussian, pred, label, scores, kmeans, mapping.tolist(), purity)
