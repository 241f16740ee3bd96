"""``mixgan data pack``: any dataset mixgan reads, written as uint8 shards (see :mod:`.shards`).

A folder of images is read and written a batch at a time, so packing takes memory for one batch
whatever the number of images; other sources (IDX, CIFAR-10, npz) are loaded, then written.
:func:`image_batches` is the in-order uint8 reader of any loaded dataset, shards included.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from ..errors import MixganError
from .base import Dataset, shown
from .folder import auto_size, list_images, parse_background, probe_images, read_images, skipped_warning
from .shards import DEFAULT_SHARD_SIZE, ShardWriter

Progress = Callable[[int, int], None]  # (images done, total)


def as_255(x: np.ndarray | torch.Tensor, levels: int) -> np.ndarray:
    """uint8 images with values 0..levels as 0..255 (rounded; 0 and levels map exactly)."""
    x = np.asarray(x)
    if levels == 255:
        return x
    return np.round(x.astype(np.float64) * (255.0 / levels)).astype(np.uint8)


def image_batches(data: Dataset, split: str = "train", batch_size: int = 1024
                  ) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """A loaded dataset's images in order, ``batch_size`` at a time, as (uint8 0..255 N x C x H x W,
    int64 labels or None); shards are read from disk batch by batch."""
    if not data.is_image or data.x_train.dtype != torch.uint8:
        raise MixganError(f"{shown(data.name)}: only uint8 images can be packed (float images and points cannot)")
    x = data.x_train if split == "train" else data.x_test
    y = data.y_train if split == "train" else data.y_test
    for a in range(0, len(x), batch_size):
        rows = np.arange(a, min(a + batch_size, len(x)))
        part = x.read(rows) if hasattr(x, "read") else x[a:a + len(rows)].numpy()
        yield as_255(part, data.levels), (y[a:a + len(rows)].numpy() if y is not None else None)


@dataclass
class PackResult:
    manifest: dict
    skipped: int  # unreadable files left out (folders)


def pack_folder(folder: str | Path, out: str | Path, resolution: int = 0, channels: int = 0,
                shard_size: int = DEFAULT_SHARD_SIZE, test_fraction: float = 0.2, seed: int = 0,
                progress: Progress | None = None, batch_size: int = 256, background: str = "white") -> PackResult:
    """A folder of images as shards; a seeded ``test_fraction`` of the files forms the test split."""
    check_split(test_fraction)
    listing = list_images(folder)
    sizes, colour = probe_images(listing.paths)
    if not any(s is not None for s in sizes):
        raise MixganError(f"folder: none of the {len(listing.paths)} image files in {shown(listing.folder)} is readable")
    resolution, channels = auto_size(sizes, colour, resolution, channels)
    n = len(listing.paths)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
    is_test = np.zeros(n, bool)
    is_test[perm[:max(1, int(round(n * test_fraction)))] if test_fraction > 0 and n > 1 else []] = True
    if is_test.all():
        raise MixganError(f"--test-fraction {test_fraction} holds out all {n} images of {shown(listing.folder)}; "
                          "none would be left to train on")
    labels = np.asarray(listing.labels, np.int64)
    done = 0
    kept = np.zeros(n, bool)
    with ShardWriter(out, (channels, resolution, resolution), shard_size, listing.classes,
                     f"folder {listing.folder}", source_folder=listing.folder) as writer:
        for x, index in read_images(listing.paths, resolution, channels, batch_size, background=background):
            kept[index] = True
            for split, rows in (("train", ~is_test[index]), ("test", is_test[index])):
                if rows.any():
                    writer.add(split, x[rows], labels[index[rows]] if listing.classes else None)
            done = int(index[-1]) + 1
            if progress is not None:
                progress(done, n)
        if kept.sum() == 0:
            raise MixganError(f"folder: none of the {n} image files in {shown(listing.folder)} is readable")
        if not kept[~is_test].any():
            raise MixganError(f"folder: none of the images of {shown(listing.folder)} left for training is readable")
        manifest = writer.close()
    skipped_warning(listing.folder, [p for p, k in zip(listing.paths, kept) if not k])
    return PackResult(manifest, int(n - kept.sum()))


def check_split(test_fraction: float) -> None:
    if not 0 <= test_fraction < 1:
        raise MixganError(f"--test-fraction must be in [0, 1), got {test_fraction}")


def pack_dataset(data: Dataset, out: str | Path, shard_size: int = DEFAULT_SHARD_SIZE,
                 progress: Progress | None = None) -> PackResult:
    """A loaded dataset (already at its resolution and channels) as shards, splits kept. Everything
    that can be refused is checked before the first file is written."""
    if data.cond_train is not None:
        raise MixganError(f"{shown(data.name)}: shards hold images and class labels, not condition vectors")
    if not data.is_image or data.x_train.dtype != torch.uint8:
        raise MixganError(f"{shown(data.name)}: only uint8 images can be packed (float images and points cannot)")
    if len(data.shape) != 3 or data.shape[0] not in (1, 3):
        raise MixganError(f"{shown(data.name)}: shards hold images of 1 or 3 channels, got shape {data.shape}")
    if len(data.x_train) == 0:
        raise MixganError(f"{shown(data.name)}: no training images to pack")
    classes = (list(data.class_names) or [str(c) for c in range(data.num_classes)]) if data.y_train is not None else []
    total, done = len(data.x_train) + len(data.x_test), 0
    with ShardWriter(out, data.shape, shard_size, classes, data.name) as writer:
        for split in ("train", "test"):
            for x, y in image_batches(data, split):
                writer.add(split, x, y)
                done += len(x)
                if progress is not None:
                    progress(done, total)
        return PackResult(writer.close(), data.skipped)


def pack(source: str, out: str | Path, resolution: int = 0, channels: int = 0, shard_size: int = DEFAULT_SHARD_SIZE,
         data_dir: str = "", test_fraction: float = 0.2, seed: int = 0, progress: Progress | None = None,
         background: str = "white") -> PackResult:
    """Pack ``source``: a folder of images (a path), or a dataset name (fashion-mnist, cifar10 with
    ``data_dir``, npz:PATH, shards:DIR, ...)."""
    from . import LOADERS, PREFIX_LOADERS, load_dataset

    if shard_size < 1:
        raise MixganError(f"--shard-size must be >= 1, got {shard_size}")
    check_split(test_fraction)
    parse_background(background)
    prefix = source.partition(":")[0]
    named = source in LOADERS or (":" in source and prefix in PREFIX_LOADERS)
    if source == "folder" or (not named and Path(source).is_dir()):
        return pack_folder(data_dir if source == "folder" else source, out, resolution, channels, shard_size,
                           test_fraction, seed, progress, background=background)
    if not named:
        raise MixganError(f"{shown(source)}: neither a folder of images nor a dataset name")
    data = load_dataset(source, data_dir, seed=seed, test_fraction=test_fraction, resolution=resolution,
                        channels=channels, background=background)
    return pack_dataset(data, out, shard_size, progress)
