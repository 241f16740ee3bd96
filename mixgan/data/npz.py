"""``npz:PATH``: targets ``x`` and, optionally, conditions ``c`` and labels ``y`` from a NumPy .npz.

``x`` is N x D (plain vectors, kind "points") or N x C x H x W / N x H x W images (uint8
0..255, held as uint8, or floats already in [-1, 1], held as float32). ``c`` is N x cond_dim real-valued conditions (the
cGAN's vector case: learn p(x | c)). ``y`` holds integer class labels 0..N-1. A test split is
taken from ``x_test``/``c_test``/``y_test`` when present, else a fixed seeded fraction is held
out. Arrays are read with ``allow_pickle=False``: object arrays are refused, never unpickled.
"""
from __future__ import annotations

import math
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch

from ..errors import MixganError
from .base import Dataset, shown, split_rows
from .rows import read_npy_header

MAX_CLASSES = 100_000  # the most classes a checkpoint's data description admits


MAX_EXPANSION = 256  # a deflated member that claims to expand more than this is refused as a bomb


def available_memory() -> int:
    """Bytes of memory the system can give without swapping (MemAvailable; all of it where unknown)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 62


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n} bytes"


def npz_sizes(path: str | Path, what: str) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Each array's (shape, dtype) from its .npy header alone (other files in the zip are left out),
    with the declared sizes checked
    against the zip's own (a header cannot claim more data than its member holds, a compressed
    member cannot claim to expand more than :data:`MAX_EXPANSION` times): nothing is allocated."""
    out = {}
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            if info.compress_type != zipfile.ZIP_STORED and info.file_size > MAX_EXPANSION * max(info.compress_size, 1):
                raise MixganError(f"{what}: array '{shown(name)}' expands from {_gb(info.compress_size)} to "
                                  f"{_gb(info.file_size)} on reading (more than {MAX_EXPANSION} times): refused as "
                                  "a decompression bomb")
            with z.open(info) as fh:
                if fh.read(len(np.lib.format.MAGIC_PREFIX)) != np.lib.format.MAGIC_PREFIX:
                    if info.filename.endswith(".npy"):
                        raise MixganError(f"{what}: array '{shown(name)}' is not a .npy array (no .npy header)")
                    continue  # another kind of file in the zip: not read
                fh.seek(0)
                shape, dtype = read_npy_header(fh)
                header = fh.tell()
            if dtype.hasobject:
                raise MixganError(f"{what}: unreadable array '{shown(name)}' (Python objects, which need pickle): refused")
            nbytes = math.prod(shape) * dtype.itemsize  # Python ints: cannot overflow
            if header + nbytes != info.file_size:
                raise MixganError(f"{what}: array '{shown(name)}' declares shape {tuple(shape)} of {dtype} "
                                  f"({_gb(nbytes)}) but holds {_gb(max(info.file_size - header, 0))}: refused")
            out[name] = (tuple(shape), dtype)
    return out


def read_npz(path: str | Path, what: str, budget: int | None = None) -> dict[str, np.ndarray]:
    """Every array of an .npz, with object arrays refused rather than unpickled; any failure
    (missing, truncated, not a zip, pickled data, a header that declares more than the file holds,
    arrays larger than half the available memory or ``budget`` bytes) is one MixganError that
    starts with ``what``. Sizes are checked from the headers before anything is allocated."""
    what = shown(what)
    try:
        sizes = npz_sizes(path, what)
        total = sum(math.prod(shape) * dtype.itemsize for shape, dtype in sizes.values())
        budget = available_memory() // 2 if budget is None else budget
        if total > budget:
            raise MixganError(f"{what}: its arrays need {_gb(total)} of memory, more than the {_gb(budget)} "
                              "available to them; pack the images into shards (mixgan data pack) instead")
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files if k in sizes}
    except FileNotFoundError:
        raise MixganError(f"{what}: file not found") from None
    except IsADirectoryError:
        raise MixganError(f"{what}: a folder, not a .npz file") from None
    except ValueError as exc:  # object arrays need pickle: refused; a malformed .npy header
        raise MixganError(f"{what}: unreadable array ({' '.join(str(exc).split())[:200]})") from None
    except (OSError, zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error, NotImplementedError,
            RuntimeError) as exc:
        raise MixganError(f"{what}: not a .npz file ({' '.join(str(exc).split())[:200]})") from None


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
    source = f"npz dataset {shown(p)}"
    arrays = read_npz(p, source)
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
        tr, te = split_rows(len(x), test_fraction)
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
