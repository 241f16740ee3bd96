"""A label-free feature space for the metrics: the project's contrastive encoder trained on a
dataset's own training images.

A folder without class folders has no reference classifier, and Inception weights cannot be
downloaded here; the SimCLR encoder of :mod:`mixgan.embeddings.selfsup` needs neither. It is trained
once per dataset for about ``EPOCHS`` passes over the training images (``encoder_steps``: the cost
grows with the data set, within [``MIN_STEPS``, ``MAX_STEPS``] steps of ``BATCH`` images), on images
area-downsampled to at most ``SIDE`` px (the features of a 64 px and a 32 px folder cost alike),
and cached under ``$MIXGAN_CACHE/metric-selfsup/`` by :func:`mixgan.io.cached`. Its 128-d output
(before the projection head) is the feature space of FID, KID and precision/recall/density/coverage.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import torch
from torch.nn import functional as F

from ..config import env_cap
from .. import progress as progress_mod
from ..errors import MixganError
from ..io import cache_dir, cached
from .classifier import Backbone, cache_key

VERSION = 1
EPOCHS = 10
BATCH = 256
MIN_STEPS = 50
MAX_STEPS = 2000
SIDE = 32
WIDTH = 32
WEIGHTS = "encoder.safetensors"


def encoder_steps(n_train: int) -> int:
    """Steps of ``BATCH`` images for about ``EPOCHS`` passes over ``n_train`` images, clamped."""
    return int(min(MAX_STEPS, max(MIN_STEPS, math.ceil(EPOCHS * n_train / BATCH))))


def fit_size(shape: tuple[int, ...]) -> tuple[int, int]:
    """The encoder's input size: the images' own, or area-downsampled to at most ``SIDE`` px a side."""
    _, h, w = shape
    f = max(1, math.ceil(max(h, w) / SIDE))
    return max(4, h // f), max(4, w // f)


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return x if tuple(x.shape[2:]) == size else F.interpolate(x, size=size, mode="area")


class SelfSupBackbone(Backbone):
    """The contrastive encoder as a metric backbone: features only (no class probabilities)."""

    name = "selfsup"

    def __init__(self, net, meta: dict, path: Path | None = None):
        self.net, self.meta, self.path = net.eval(), meta, path
        self.size = tuple(meta["size"])
        self.id = f"selfsup-{meta['weights_sha256'][:12]}"

    @torch.no_grad()
    def embed(self, x: torch.Tensor, batch_size: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
        if tuple(x.shape[1:2]) != (self.meta["channels"],):
            raise MixganError(f"images with {x.shape[1]} channels do not fit the feature network "
                              f"(trained on {self.meta['channels']})")
        device = next(self.net.parameters()).device
        feats = [self.net(_resize(x[i:i + batch_size].to(device).float(), self.size)).cpu()
                 for i in range(0, len(x), batch_size)]
        f = torch.cat(feats) if feats else torch.zeros(0, self.net.body[-1].out_features)
        return f, torch.zeros(len(f), 0)

    def describe(self) -> str:
        m = self.meta
        return (f"selfsup: contrastive encoder (SimCLR, no labels) trained on the {m['n_train']:,} training images "
                f"of {m['dataset']} at {m['size'][0]}x{m['size'][1]} px, {m['steps']} steps of {m['batch_size']} "
                f"(about {m['epochs']:.3g} epochs), seed {m['seed']}")


def _downsampled(data, size: tuple[int, int], chunk: int = 2000) -> torch.Tensor:
    """The training images at ``size`` as uint8 (0..255), converted a chunk at a time."""
    from ..data import to_float

    n = len(data.x_train)
    out = torch.empty((n, data.shape[0], *size), dtype=torch.uint8)
    for i in range(0, n, chunk):
        x = _resize(to_float(data.x_train[i:i + chunk], data.levels), size)
        out[i:i + chunk] = ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    return out


def seconds_per_step(channels: int, size: tuple[int, int], batch: int) -> float:
    """The time of one training step of the encoder here, measured on a throwaway copy (second of two)."""
    from ..embeddings.selfsup import Encoder, augment, nt_xent

    net = Encoder(channels, WIDTH)
    x = torch.zeros(batch, channels, *size)
    gen = torch.Generator().manual_seed(0)
    took = 0.0
    for _ in range(2):
        t = time.perf_counter()
        nt_xent(net.head(net(augment(x, gen))), net.head(net(augment(x, gen)))).backward()
        took = time.perf_counter() - t
    return took


def get_selfsup(data, device: torch.device | str = "cpu", seed: int = 0) -> SelfSupBackbone:
    """The cached label-free feature network of an image dataset, computing on ``device``;
    trained (on the CPU, seeded) on first use, announced through :mod:`mixgan.progress`."""
    from ..embeddings.selfsup import Encoder, train_encoder

    if not data.is_image:
        raise MixganError(f"dataset '{data.name}' holds points, not images: it has no feature network")
    size = fit_size(data.shape)
    n = len(data.x_train)
    steps = encoder_steps(n)
    cap = env_cap("MIXGAN_MAX_STEPS")  # a quick check of a command; its encoder is cached apart
    steps = steps if cap is None else min(steps, cap)
    bs = min(BATCH, n)
    settings = {"version": VERSION, "size": list(size), "steps": steps, "batch_size": bs, "width": WIDTH,
                "seed": seed, "channels": data.shape[0]}
    folder = cache_dir() / "metric-selfsup" / (f"{cache_key(data)}-{size[0]}px-v{VERSION}" + (f"-max{cap}" if cap else ""))

    def read(tensors, meta):
        if {k: meta.get(k) for k in settings} != settings:
            return None
        net = Encoder(settings["channels"], WIDTH)
        net.load_state_dict(tensors)
        return SelfSupBackbone(net, meta)

    def make():
        x = _downsampled(data, size)
        eta = seconds_per_step(data.shape[0], size, bs) * steps
        with progress_mod.task(f"training the label-free feature network on {n:,} images of {data.name} "
                               f"({steps} steps)", total=steps, eta=eta) as task:
            net, losses = train_encoder(x, steps, bs, WIDTH, seed=seed, levels=255, on_step=task.advance)
        meta = {"dataset": data.name, "fingerprint": data.fingerprint(), **settings, "n_train": n,
                "epochs": round(steps * bs / n, 2), "loss_first": losses[0], "loss_last": losses[-1]}
        from ..io import tensors_blob
        import hashlib

        meta_out = dict(meta, weights_sha256=hashlib.sha256(tensors_blob(net.state_dict())).hexdigest())
        return SelfSupBackbone(net, meta_out), net.state_dict(), meta

    bb = cached(folder, WEIGHTS, read, make)
    bb.path = folder
    return bb.to(device)
