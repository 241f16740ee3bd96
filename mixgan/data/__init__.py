"""Datasets by name: a small explicit registry of loaders."""
from __future__ import annotations

from typing import Callable

import torch

from ..errors import MixganError
from .base import DataSpec, Dataset, shown, to_float
from .idx import load_idx_dataset, read_idx
from .folder import fit_array, fit_image, image_folder
from .images import cifar10, digits, safe_unpickle
from .npz import npz_dataset
from .shards import ShardArray, ShardWriter, shard_dataset
from . import toy

DEFAULT_DIRS = {"fashion-mnist": "/usr/share/datasets/fashion-mnist", "mnist": "", "cifar10": "", "folder": ""}

# name -> loader(data_dir, seed, test_fraction, resolution=, channels=, background=): the image options
# are for loaders that fit images as they read them; load_dataset fits the others' images afterwards
LOADERS: dict[str, Callable[..., Dataset]] = {
    "ring": lambda d, s, f, **_: toy.ring(seed=s),
    "grid": lambda d, s, f, **_: toy.grid(seed=s),
    "digits": lambda d, s, f, **_: digits(seed=s, test_fraction=f),
    "fashion-mnist": lambda d, s, f, **_: load_idx_dataset("fashion-mnist", d),
    "mnist": lambda d, s, f, **_: load_idx_dataset("mnist", d),
    "cifar10": lambda d, s, f, **_: cifar10(d),
    "folder": lambda d, s, f, **o: image_folder(d, seed=s, test_fraction=f, **o),
}
# Prefixed names, "npz:PATH" for example: prefix -> loader(path, seed, test_fraction, **image options)
PREFIX_LOADERS: dict[str, Callable[..., Dataset]] = {
    "npz": lambda p, s, f, **_: npz_dataset(p, s, f),
    "shards": lambda p, s, f, resolution=0, channels=0, **_: shard_dataset(p, s, f, resolution=resolution,
                                                                             channels=channels),
}
PREFIX_HINTS = {"npz": "npz:PATH", "shards": "shards:DIR"}  # how each prefixed name is written

DATASETS = tuple(LOADERS)


def dataset_error(name: str) -> str:
    """The one-line complaint about a dataset name neither registry knows, or ""."""
    prefix, _, rest = str(name).partition(":")
    if name in LOADERS or (rest and prefix in PREFIX_LOADERS):
        return ""
    return f"unknown dataset '{name}' (choose from {', '.join([*DATASETS, *PREFIX_HINTS.values()])})"


def configured_dataset(d, seed: int, data_dir: str = "") -> Dataset:
    """The dataset a run's ``data`` settings name (``data_dir`` overrides theirs): the one place
    those settings become :func:`load_dataset`'s arguments."""
    return load_dataset(d.dataset, data_dir or d.data_dir, seed=seed, test_fraction=d.test_fraction,
                        resolution=d.resolution, channels=d.channels, background=d.background)


def load_dataset(name: str, data_dir: str = "", seed: int = 0, test_fraction: float = 0.2,
                 resolution: int = 0, channels: int = 0, background: str = "white") -> Dataset:
    """Load a dataset by name; ``data_dir`` defaults to the dataset's usual location.

    ``resolution``/``channels`` (0: as the data comes; for a folder: automatic, see
    :func:`.folder.auto_size`) resize and recolour images through :func:`fit_image`;
    ``background`` (``data.background``) is the colour a folder's transparent pixels are laid on.
    """
    options = {"resolution": resolution, "channels": channels, "background": background}
    if dataset_error(name):
        raise MixganError(dataset_error(name))
    prefix, _, rest = name.partition(":")
    if rest and prefix in PREFIX_LOADERS:
        data = PREFIX_LOADERS[prefix](rest, seed, test_fraction, **options)
    else:
        folder = data_dir or DEFAULT_DIRS.get(name, "")
        if name in DEFAULT_DIRS and not folder:
            raise MixganError(f"dataset '{name}' needs --data-dir")
        data = LOADERS[name](folder, seed, test_fraction, **options)
    return resize_dataset(data, resolution, channels)


def resize_dataset(data: Dataset, resolution: int = 0, channels: int = 0) -> Dataset:
    """``data`` with its uint8 images brought to ``resolution`` and ``channels`` (0: unchanged)."""
    if not (resolution or channels) or not data.is_image:
        return data
    c, h, _ = data.shape
    resolution, channels = resolution or h, channels or c
    if data.shape == (channels, resolution, resolution):  # already fitted (a folder, shards) or as it comes
        return data
    if data.x_train.dtype != torch.uint8:
        raise MixganError(f"{shown(data.name)}: data.resolution/data.channels need uint8 images, not floats")
    if data.levels != 255:  # fitted images are 0..255
        data.x_train, data.x_test = (torch.from_numpy(
            (x.double() * (255 / data.levels)).round().to(torch.uint8).numpy()) for x in (data.x_train, data.x_test))
        data.levels = 255
    data.x_train, data.x_test = (torch.from_numpy(fit_array(x.numpy(), resolution, channels))
                                 for x in (data.x_train, data.x_test))
    data.variant = f"{channels}x{resolution}x{resolution}"
    return data


__all__ = ["DataSpec", "Dataset", "to_float", "fit_image", "fit_array", "resize_dataset", "image_folder",
           "ShardArray", "ShardWriter", "shard_dataset", "configured_dataset", "load_dataset", "read_idx", "safe_unpickle", "DATASETS", "LOADERS", "PREFIX_LOADERS"]
