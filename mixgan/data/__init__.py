"""Datasets by name: a small explicit registry of loaders."""
from __future__ import annotations

from typing import Callable

from ..errors import MixganError
from .base import DataSpec, Dataset
from .idx import load_idx_dataset, read_idx
from .images import cifar10, digits, image_folder, safe_unpickle
from .npz import npz_dataset
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
    "folder": lambda d, s, f: image_folder(d, seed=s, test_fraction=f),
}
# Prefixed names, "npz:PATH" for example: prefix -> loader(path, seed, test_fraction)
PREFIX_LOADERS: dict[str, Callable[[str, int, float], Dataset]] = {
    "npz": npz_dataset,
}

DATASETS = tuple(LOADERS)


def load_dataset(name: str, data_dir: str = "", seed: int = 0, test_fraction: float = 0.2) -> Dataset:
    """Load a dataset by name; ``data_dir`` defaults to the dataset's usual location."""
    prefix, _, rest = name.partition(":")
    if rest and prefix in PREFIX_LOADERS:
        return PREFIX_LOADERS[prefix](rest, seed, test_fraction)
    if name not in LOADERS:
        raise MixganError(f"unknown dataset '{name}' (choose from {', '.join(DATASETS)})")
    folder = data_dir or DEFAULT_DIRS.get(name, "")
    if name in DEFAULT_DIRS and not folder:
        raise MixganError(f"dataset '{name}' needs --data-dir")
    return LOADERS[name](folder, seed, test_fraction)


__all__ = ["DataSpec", "Dataset", "load_dataset", "read_idx", "safe_unpickle", "DATASETS", "LOADERS", "PREFIX_LOADERS"]
