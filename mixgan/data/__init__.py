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

# name -> loader(data_dir, seed, test_fraction)
LOADERS: dict[str, Callable[[str, int, float], Dataset]] = {
    "ring": lambda d, s, f: toy.ring(seed=s),
    "grid": lambda d, s, f: toy.grid(seed=s),
    "digits": lambda d, s, f: digits(seed=s, test_fraction=f),
    "fashion-mnist": lambda d, s, f: load_idx_dataset("fashion-mnist", d),
    "mnist": lambda d, s, f: load_idx_dataset("mnist", d),
    "cifar10": lambda d, s, f: cifar10(d),
    "folder": lambda d, s, f: image_folder(d, seed=s, test_fraction=f),  # load_dataset passes resolution/channels
}
# Prefixed names, "npz:PATH" for example: prefix -> loader(path, seed, test_fraction)
PREFIX_LOADERS: dict[str, Callable[[str, int, float], Dataset]] = {
    "npz": npz_dataset,
}

DATASETS = tuple(LOADERS)


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
    prefix, _, rest = name.partition(":")
    if prefix == "shards" and rest:
        return shard_dataset(rest, seed, test_fraction, resolution=resolution, channels=channels)
    if rest and prefix in PREFIX_LOADERS:
        data = PREFIX_LOADERS[prefix](rest, seed, test_fraction)
    elif name not in LOADERS:
        raise MixganError(f"unknown dataset '{name}' (choose from {', '.join(DATASETS)}, npz:PATH, shards:DIR)")
    else:
        folder = data_dir or DEFAULT_DIRS.get(name, "")
        if name in DEFAULT_DIRS and not folder:
            raise MixganError(f"dataset '{name}' needs --data-dir")
        if name == "folder":
            return image_folder(folder, seed=seed, test_fraction=test_fraction, resolution=resolution,
                                channels=channels, background=background)
        data = LOADERS[name](folder, seed, test_fraction)
    return resize_dataset(data, resolution, channels)


def resize_dataset(data: Dataset, resolution: int = 0, channels: int = 0) -> Dataset:
    """``data`` with its uint8 images brought to ``resolution`` and ``channels`` (0: unchanged)."""
    if not (resolution or channels) or not data.is_image:
        return data
    if data.x_train.dtype != torch.uint8:
        raise MixganError(f"{shown(data.name)}: data.resolution/data.channels need uint8 images, not floats")
    c, h, _ = data.shape
    resolution, channels = resolution or h, channels or c
    if data.shape == (channels, resolution, resolution):
        return data
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
