"""The reference classifier: a small CNN per image dataset, trained by us, cached on disk.

Inception weights cannot be downloaded here, and a 28x28 grey-scale dataset is poorly served by
an ImageNet network anyway, so every feature-based metric runs in the space of a CNN trained on
the dataset's own training split. ``get_classifier(name).features(x)`` (the 128-d penultimate
layer, after ReLU) is a stable interface: IC-GAN uses it as its supervised instance embedding.

Cache layout, under ``$MIXGAN_CACHE`` (default ``~/.cache/mixgan``)::

    classifiers/<dataset>-<fingerprint>-v<ARCH_VERSION>/model.safetensors, meta.json
    features/<dataset>-<fingerprint>-<split>-<rows>-<backbone id>.safetensors

Training takes a file lock so parallel processes (pytest-xdist workers) train a classifier once.
"""
from __future__ import annotations

import hashlib
import math
import re
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from ..config import env_cap
from ..errors import MixganError
from ..io import atomic_write_bytes, cache_dir, cached, read_cached, tensors_blob

ARCH_VERSION = 2
FEATURE_DIM = 128
WEIGHTS = "model.safetensors"
Progress = Callable[[int, int, str], None]  # (done, total, description)


class SmallCNN(nn.Module):
    """Two conv-BN-ReLU-pool blocks, a 128-d ReLU layer (the features) and a linear class head."""

    def __init__(self, shape: tuple[int, ...], num_classes: int, width: int = 16):
        super().__init__()
        c, h, w = shape
        if h < 4 or w < 4:
            raise MixganError(f"images of {h}x{w} are too small for the reference classifier (need >= 4x4)")
        self.shape, self.num_classes = tuple(shape), num_classes
        self.body = nn.Sequential(
            nn.Conv2d(c, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1, bias=False), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(2 * width * (h // 4) * (w // 4), FEATURE_DIM), nn.ReLU(),
        )
        self.drop = nn.Dropout(0.25)
        self.head = nn.Linear(FEATURE_DIM, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(features, logits)."""
        h = self.body(x.contiguous(memory_format=torch.channels_last))  # ~30% faster convs on CPU
        return h, self.head(self.drop(h))


def default_epochs(n_train: int) -> int:
    """About 60,000 image presentations, at least 3 epochs: fashion-mnist 3, digits 42."""
    return max(3, math.ceil(60_000 / max(1, n_train)))


def train_cnn(x: torch.Tensor, y: torch.Tensor, num_classes: int, epochs: int, seed: int = 0,
              batch_size: int = 128, lr: float = 2e-3, progress: Progress | None = None,
              desc: str = "classifier", device: torch.device | str = "cpu", levels: int = 255) -> SmallCNN:
    """Train a SmallCNN with Adam and a cosine learning-rate decay; same seed, same weights.

    The net trains on ``device``; ``x``/``y`` may live anywhere (each batch is moved there). ``x``
    holds floats in [-1, 1], or stored uint8 images with values 0..``levels`` (converted per batch,
    so shards are never loaded whole)."""
    if len(x) != len(y):
        raise MixganError(f"{len(x)} images but {len(y)} labels")
    if len(x) < 2:
        raise MixganError("need at least 2 labelled images to train a classifier")
    if y.min() < 0 or y.max() >= num_classes:
        raise MixganError(f"labels must be in [0, {num_classes - 1}], got {int(y.min())}..{int(y.max())}")
    torch.manual_seed(seed)  # weight init
    device = torch.device(device)
    from ..data import to_float

    net = SmallCNN(tuple(x.shape[1:]), num_classes).to(device, memory_format=torch.channels_last)
    gen = torch.Generator().manual_seed(seed)
    steps_per_epoch = math.ceil(len(x) / batch_size)
    total = epochs * steps_per_epoch
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / total)))
    y = y.long()
    net.train()
    step = 0
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), batch_size):
            idx = perm[i:i + batch_size]
            if len(idx) < 2:
                continue  # BatchNorm needs 2 samples
            _, logits = net(to_float(x[idx.to(x.device) if isinstance(x, torch.Tensor) else idx], levels).to(device))
            loss = F.cross_entropy(logits, y[idx.to(y.device)].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if progress is not None and (step % 20 == 0 or step == total):
                progress(step, total, desc)
    return net.eval()


@torch.no_grad()
def run_batches(net: nn.Module, x: torch.Tensor, batch_size: int = 1000,
                levels: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(features, softmax probabilities) of ``net`` over ``x`` in eval mode, computed on the net's
    device and returned on the CPU. ``x`` holds floats in [-1, 1]; stored uint8 images only with
    their ``levels`` (converted per batch)."""
    from ..data import to_float

    if x.dtype == torch.uint8 and levels is None:
        raise MixganError("images must be floats in [-1, 1], not stored uint8 (see mixgan.data.to_float)")
    net.eval()
    device = next(net.parameters()).device
    feats, probs = [], []
    for i in range(0, len(x), batch_size):
        h, logits = net(to_float(x[i:i + batch_size], levels or 255).to(device))
        feats.append(h.cpu())
        probs.append(logits.softmax(1).cpu())
    if not feats:
        return torch.zeros(0, FEATURE_DIM), torch.zeros(0, getattr(net, "num_classes", 0))
    return torch.cat(feats), torch.cat(probs)


@torch.no_grad()
def accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor, levels: int | None = None) -> float:
    _, probs = run_batches(net, x, levels=levels)
    return float((probs.argmax(1) == y.cpu()).double().mean())


class Backbone:
    """A feature extractor for the metrics: ``embed(x)`` gives (N x F features, N x C probabilities).

    ``x`` is N x C x H x W in [-1, 1], shaped like the dataset. ``id`` names the weights, for caches.
    """

    name = "backbone"
    id = "backbone"

    def embed(self, x: torch.Tensor, batch_size: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(x)[0]

    def to(self, device: torch.device | str) -> "Backbone":
        """Compute features on ``device`` from now on (results still come back on the CPU)."""
        self.net.to(device)
        return self

    def probs(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(x)[1]

    def describe(self) -> str:
        """Which network this is and how it was trained, for every output that holds its scores."""
        return self.name


class ReferenceClassifier(Backbone):
    """A trained SmallCNN with its test accuracy; ``features`` is the 128-d penultimate layer."""

    name = "classifier"

    def __init__(self, net: SmallCNN, meta: dict, path: Path | None = None):
        self.net, self.meta, self.path = net.eval(), meta, path
        self.accuracy = float(meta["accuracy"])
        self.dataset = meta["dataset"]
        self.id = f"classifier-{meta['weights_sha256'][:12]}"

    @property
    def num_classes(self) -> int:
        return self.net.num_classes

    def embed(self, x: torch.Tensor, batch_size: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
        if tuple(x.shape[1:]) != self.net.shape:
            raise MixganError(f"images of shape {tuple(x.shape[1:])} do not fit the {self.dataset} classifier "
                              f"(expects {self.net.shape})")
        return run_batches(self.net, x, batch_size)

    def describe(self) -> str:
        m = self.meta
        return (f"classifier: reference CNN trained on the {m['n_train']:,} labelled training images of "
                f"{m['dataset']}, {m['epochs']} epochs, seed {m['seed']}, test accuracy {self.accuracy:.4f}")

    def __repr__(self) -> str:
        return f"ReferenceClassifier({self.dataset!r}, accuracy={self.accuracy:.4f})"


def _read_classifier(tensors: dict[str, torch.Tensor], meta: dict) -> ReferenceClassifier | None:
    if meta.get("arch_version") != ARCH_VERSION:
        return None
    net = SmallCNN(tuple(meta["shape"]), meta["num_classes"])
    net.load_state_dict(tensors)
    return ReferenceClassifier(net.to(memory_format=torch.channels_last), meta)


def _load_classifier(folder: Path) -> ReferenceClassifier | None:
    """The classifier cached in ``folder``; None where it is missing, damaged or of another version."""
    found = read_cached(folder, WEIGHTS, _read_classifier)
    if found is not None:
        found.path = folder
    return found


def cache_key(data) -> str:
    """``<dataset>-<fingerprint>`` with characters that do not belong in a file name replaced."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", data.name).strip("_") + f"-{data.fingerprint()}"


def classifier_dir(data) -> Path:
    """Its cache folder: by data and architecture, and apart for a run under ``$MIXGAN_MAX_STEPS``."""
    cap = env_cap("MIXGAN_MAX_STEPS")
    return cache_dir() / "classifiers" / (f"{cache_key(data)}-v{ARCH_VERSION}" + (f"-max{cap}" if cap else ""))


def seconds_per_cnn_step(shape: tuple[int, ...], num_classes: int, device: torch.device | str = "cpu",
                         batch_size: int = 128) -> float:
    """The time of one training step of a SmallCNN here, measured on a throwaway copy (second of two)."""
    import time

    net = SmallCNN(tuple(shape), num_classes).to(device, memory_format=torch.channels_last)
    x = torch.zeros(batch_size, *shape, device=device)
    took = 0.0
    for _ in range(2):
        t = time.perf_counter()
        net(x)[1].sum().backward()
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()
        took = time.perf_counter() - t
    return took


def train_reference_classifier(data, progress: Progress | None = None, seed: int = 0,
                               device: torch.device | str = "cpu") -> ReferenceClassifier:
    """Train (no cache) a reference classifier on a Dataset's train split; accuracy on its test split."""
    if not data.is_image:
        raise MixganError(f"dataset '{data.name}' holds points, not images: it has no reference classifier")
    if data.y_train is None or data.num_classes < 2:
        raise MixganError(f"dataset '{data.name}' has no class labels, so no reference classifier can be "
                          "trained (use --backbone inception --weights FILE)")
    from .. import progress as progress_mod

    epochs, per_epoch = default_epochs(len(data.x_train)), math.ceil(len(data.x_train) / 128)
    cap = env_cap("MIXGAN_MAX_STEPS")  # a quick check of a command: as few epochs as cover that many steps
    epochs = epochs if cap is None else max(1, min(epochs, math.ceil(cap / per_epoch)))
    steps = epochs * per_epoch
    eta = seconds_per_cnn_step(data.shape, data.num_classes, device) * steps
    with progress_mod.task(f"training the reference classifier of {data.name} on {len(data.x_train):,} images "
                           f"({epochs} epochs)", total=steps, eta=eta) as task:
        net = train_cnn(data.x_train, data.y_train, data.num_classes, epochs, seed=seed,
                        progress=lambda done, total, desc: task.advance(done - task.done),
                        desc=f"classifier {data.name}", device=device, levels=data.levels)
    acc = accuracy(net, data.x_test, data.y_test, levels=data.levels) if data.y_test is not None and len(data.x_test) else float("nan")
    blob = tensors_blob(net.state_dict())
    meta = {"dataset": data.name, "fingerprint": data.fingerprint(), "arch_version": ARCH_VERSION,
            "shape": list(data.shape), "num_classes": data.num_classes, "accuracy": acc, "epochs": epochs,
            "seed": seed, "n_train": len(data.x_train), "n_test": len(data.x_test),
            "weights_sha256": hashlib.sha256(blob).hexdigest()}
    return ReferenceClassifier(net, meta)


def get_classifier(dataset, data_dir: str = "", progress: Progress | None = None,
                   device: torch.device | str = "cpu") -> ReferenceClassifier:
    """The cached reference classifier of a dataset (a name or a loaded Dataset), computing on
    ``device``; trains it there on first use (the cache holds CPU tensors)."""
    from ..data import Dataset, load_dataset

    data = dataset if isinstance(dataset, Dataset) else load_dataset(dataset, data_dir)
    if not data.is_image:
        raise MixganError(f"dataset '{data.name}' holds points, not images: it has no reference classifier")
    folder = classifier_dir(data)

    def make():
        cls = train_reference_classifier(data, progress=progress, device=device)
        return cls, cls.net.state_dict(), dict(cls.meta)

    cls = cached(folder, WEIGHTS, _read_classifier, make)
    cls.path = folder
    return cls.to(device)


def reference_features(backbone: Backbone, data, split: str = "train", indices: torch.Tensor | None = None,
                       progress: Progress | None = None, chunk: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """(features, probabilities) of a dataset split (or the rows ``indices`` of it) under a
    backbone, computed ``chunk`` images at a time and cached in safetensors keyed by dataset,
    split, rows and backbone."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if split not in ("train", "test"):
        raise MixganError(f"split must be train or test, got {split!r}")
    rows = "all"
    if indices is not None:
        indices = torch.as_tensor(indices).long()
    from .. import progress as progress_mod

    n = len(data.x_train if split == "train" else data.x_test) if indices is None else len(indices)
    if indices is not None:
        rows = f"{len(indices)}-{hashlib.sha256(indices.numpy().tobytes()).hexdigest()[:8]}"
    path = cache_dir() / "features" / f"{cache_key(data)}-{split}-{rows}-{backbone.id}.safetensors"
    if path.is_file():
        try:
            t = load_file(str(path))
            if len(t["features"]) == n:
                return t["features"], t["probs"]
        except (OSError, KeyError, SafetensorError):
            pass  # damaged: recompute
    feats, probs = [], []
    with progress_mod.task(f"features of {n:,} {split} images of {data.name} ({backbone.name})", total=n) as task:
        for i in range(0, n, chunk):  # a chunk of images at a time: memory holds features, not the split
            rows_i = torch.arange(i, min(n, i + chunk)) if indices is None else indices[i:i + chunk]
            f, p = backbone.embed(data.images(split, rows_i))
            feats.append(f)
            probs.append(p)
            task.advance(len(rows_i))
    feats = torch.cat(feats) if feats else torch.zeros(0, FEATURE_DIM)
    probs = torch.cat(probs) if probs else torch.zeros(0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, tensors_blob({"features": feats, "probs": probs}))
    return feats, probs
