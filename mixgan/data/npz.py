"""``npz:PATH``: targets ``x`` and, optionally, conditions ``c`` and labels ``y`` from a NumPy .npz.

``x`` is N x D (plain vectors, kind "points") or N x C x H x W / N x H x W images (uint8
0..255, held as uint8, or floats already in [-1, 1], held as float32). ``c`` is N x cond_dim real-valued conditions (the
cGAN's vector case: learn p(x | c)). ``y`` holds integer class labels 0..N-1. A test split is
taken from ``x_test``/``c_test``/``y_test`` when present, else a fixed seeded fraction is held
out. Arrays are read with ``allow_pickle=False``: object arrays are refused, never unpickled.
"""
from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch

from ..errors import MixganError
from .base import Dataset

SPLIT_SEED = 1234  # the split belongs to the file, not to the training seed


MAX_CLASSES = 100_000  # the most classes a checkpoint's data description admits


def read_npz(path: str | Path, what: str) -> dict[str, np.ndarray]:
    """Every array of an .npz, with object arrays refused rather than unpickled; any failure
    (missing, truncated, not a zip, pickled data) is one MixganError that starts with ``what``."""
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except FileNotFoundError:
        raise MixganError(f"{what}: file not found") from None
    except ValueError as exc:  # object arrays need pickle: refused
        raise MixganError(f"{what}: unreadable array ({exc})") from None
    except (OSError, zipfile.BadZipFile, EOFError, zlib.error) as exc:
        raise MixganError(f"{what}: not a .npz file ({exc})") from None


def _targets(x: np.ndarray, source: str) -> tuple[torch.Tensor, str]:
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim not in (2, 4):
        raise MixganError(f"{source}: x must be N x D vectors or N x C x H x W images, got shape {x.shape}")
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise MixganError(f"{source}: x must be numeric, got {x.dtype}")
    kind = "image" if x.ndim == 4 else "points"
    if kind == "image" and x.dtype == np.uint8:
        return torch.from_numpy(np.ascontiguousarray(x)), kind  # stored as is: converted per batch
    else:
        t = torch.from_numpy(np.asarray(x, dtype=np.float32))
    if not torch.isfinite(t).all():
        raise MixganError(f"{source}: x contains NaN or infinite values")
    if kind == "image" and (t.min() < -1.0001 or t.max() > 1.0001):
        raise MixganError(f"{source}: float images must lie in [-1, 1] (or be uint8), got [{t.min():.3g}, {t.max():.3g}]")
    return t, kind


def _conditions(c: np.ndarray, n: int, source: str) -> torch.Tensor:
    if c.ndim == 1:
        c = c[:, None]
    if c.ndim != 2 or len(c) != n:
        raise MixganError(f"{source}: c must be N x cond_dim with N = {n} rows, got shape {c.shape}")
    if not np.issubdtype(c.dtype, np.number):
        raise MixganError(f"{source}: c must be numeric, got {c.dtype}")
    t = torch.from_numpy(np.asarray(c, dtype=np.float32))
    if not torch.isfinite(t).all():
        raise MixganError(f"{source}: c contains NaN or infinite values")
    return t


def _labels(y: np.ndarray, n: int, source: str) -> torch.Tensor:
    if y.ndim != 1 or len(y) != n or not np.issubdtype(y.dtype, np.integer):
        raise MixganError(f"{source}: y must be {n} integer labels, got shape {y.shape} of {y.dtype}")
    if len(y) and y.min() < 0:
        raise MixganError(f"{source}: labels must be >= 0")
    return torch.from_numpy(y.astype(np.int64))


def _part(arrays: dict, suffix: str, source: str):
    if "x" + suffix not in arrays:
        raise MixganError(f"{source}: no array 'x{suffix}' (targets)")
    x, kind = _targets(arrays["x" + suffix], f"{source} x{suffix}")
    if len(x) == 0:
        raise MixganError(f"{source}: x{suffix} is empty")
    c = _conditions(arrays["c" + suffix], len(x), f"{source} c{suffix}") if "c" + suffix in arrays else None
    y = _labels(arrays["y" + suffix], len(x), f"{source} y{suffix}") if "y" + suffix in arrays else None
    return x, c, y, kind


def npz_dataset(path: str, seed: int = 0, test_fraction: float = 0.2) -> Dataset:
    """Load ``npz:PATH`` (see the module docstring for the arrays it reads)."""
    p = Path(path).expanduser()
    source = f"npz dataset {p}"
    arrays = read_npz(p, f"npz dataset {p}")
    x, c, y, kind = _part(arrays, "", source)
    if "x_test" in arrays:
        x_te, c_te, y_te, kind_te = _part(arrays, "_test", source)
        if x_te.shape[1:] != x.shape[1:] or (c is None) != (c_te is None) or (y is None) != (y_te is None):
            raise MixganError(f"{source}: x_test/c_test/y_test must match x/c/y in shape and presence")
        if c is not None and c_te.shape[1] != c.shape[1]:
            raise MixganError(f"{source}: c_test has {c_te.shape[1]} columns, c has {c.shape[1]}")
        x_tr, c_tr, y_tr = x, c, y
    else:
        if len(x) < 2:
            raise MixganError(f"{source}: need at least 2 rows to hold out a test split")
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(SPLIT_SEED))
        n_test = min(len(x) - 1, max(1, int(round(len(x) * test_fraction))))
        te, tr = perm[:n_test], perm[n_test:]
        pick = lambda t, i: t[i] if t is not None else None  # noqa: E731
        x_tr, x_te, c_tr, c_te, y_tr, y_te = x[tr], x[te], pick(c, tr), pick(c, te), pick(y, tr), pick(y, te)
    num_classes = 0
    if y_tr is not None:
        num_classes = int(max(y_tr.max(), y_te.max())) + 1
        bound = min(len(x_tr) + len(x_te), MAX_CLASSES)
        if num_classes > bound:
            raise MixganError(f"{source}: labels must be 0..N-1 with N classes at most the number of samples "
                              f"({len(x_tr) + len(x_te)}) and {MAX_CLASSES}; the largest label is {num_classes - 1}")
    return Dataset(f"npz:{p}", x_tr, x_te, y_tr, y_te, num_classes=num_classes, kind=kind, files=[p],
                   cond_train=c_tr, cond_test=c_te)
