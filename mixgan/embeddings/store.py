"""Instance features and neighbour tables as .npy files, written once.

An :class:`InstanceStore` is a folder for one dataset and one embedding (the cache folder
``$MIXGAN_CACHE/instances/<dataset>-<fingerprint>-<embedding key>/``):

- ``features.npy``: M x d float32, the L2-normalised embeddings, computed a batch at a time from
  the dataset's training images (never the whole image set as float in memory),
- ``embedding.safetensors``: the fitted embedding's state (centring, encoder weights),
- ``neighbors-k<k>-<backend>.npy``: M x k int32, each row's k nearest other rows by cosine.

Every file is written under a temporary name, fsynced and renamed (:func:`atomic_npy`),
so a process killed mid-write leaves either no file or the whole one; a leftover temporary file
is ignored and removed by the next writer. Files are written with ``pwrite`` and read a block or
a batch of rows at a time with :class:`mixgan.data.rows.NpyRows` (``pread``), never through a
memory map, whose touched pages would count in the process's memory: a process's resident memory
does not grow with the number of rows. A file lock makes parallel processes
(torchrun ranks) compute each file once.
"""
from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from ..data.base import to_float
from ..data.rows import NpyRows, NpyWriter
from ..errors import MixganError
from ..io import atomic_write_text, file_lock

VERSION = 1
EMBED_BATCH = 1024  # images embedded at a time


@contextmanager
def atomic_npy(path: Path, shape: tuple[int, ...], dtype) -> Iterator[NpyWriter]:
    """A writer of a new .npy file (``out[a:b] = rows``) that appears at ``path`` only when the
    block completes (fsynced, renamed); on an error the temporary file is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.tmp-*"):  # left by a killed writer
        stale.unlink(missing_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    out = NpyWriter(tmp, shape, dtype)
    try:
        yield out
        out.close()
        os.replace(tmp, path)
    except BaseException:
        out.close(sync=False)
        tmp.unlink(missing_ok=True)
        raise


def as_float_images(x: torch.Tensor) -> torch.Tensor:
    """Images as float32 in [-1, 1]: uint8 ones are scaled, float ones taken as they are."""
    return to_float(torch.as_tensor(x))


def train_batches(data, batch_size: int = EMBED_BATCH) -> Iterator[torch.Tensor]:
    """The training images in their order, ``batch_size`` at a time, as float32 in [-1, 1]
    (converted a batch at a time from the stored uint8 with the dataset's levels; points as stored).

    A dataset with its own ``train_batches(batch_size)`` gives them; otherwise ``x_train`` (a
    tensor, or shards read on demand) is sliced."""
    own = getattr(data, "train_batches", None)
    if callable(own):
        yield from own(batch_size)
        return

    x = data.x_train
    for a in range(0, len(x), batch_size):
        yield to_float(x[a:a + batch_size], getattr(data, "levels", 255))


def train_count(data) -> int:
    """The number of training instances of a dataset."""
    n = getattr(data, "train_count", None)
    return int(n() if callable(n) else len(data.x_train))


@torch.no_grad()
def embed_to(out, embedding, batches: Iterable[torch.Tensor], device: torch.device | str = "cpu",
             normalize: bool = True) -> int:
    """Write the features of every batch into the rows of ``out`` (an M x d array) in order;
    returns the number of rows written."""
    from .. import progress

    row = 0
    with progress.task(f"embedding {len(out):,} training images ({embedding.name})", total=len(out)) as task:
        for x in batches:
            row = _embed_batch(out, row, embedding, x, device, normalize)
            task.advance(len(x))
    if row != len(out):
        raise MixganError(f"the dataset gave {row} training images, not the {len(out)} it announced")
    return row


def _embed_batch(out, row: int, embedding, x: torch.Tensor, device, normalize: bool) -> int:
    """Write the features of one batch into ``out`` from ``row``; returns the next row."""
    h = embedding(as_float_images(x).to(device)).float()
    if h.ndim != 2 or h.shape[1] != embedding.dim:
        raise MixganError(f"embedding '{embedding.name}' gave features of shape {tuple(h.shape)}, "
                          f"expected N x {embedding.dim}")
    if not torch.isfinite(h).all():
        raise MixganError(f"embedding '{embedding.name}' gave NaN or infinite features")
    if normalize:
        h = F.normalize(h, dim=1)
    if row + len(h) > len(out):
        raise MixganError(f"the dataset gave more than the {len(out)} training images it announced")
    out[row:row + len(h)] = h.cpu().numpy()
    return row + len(h)


def embed_stream(embedding, batches: Iterable[torch.Tensor], m: int, path: Path | None = None,
                 device: torch.device | str = "cpu", normalize: bool = True) -> np.ndarray | NpyRows:
    """The M x d features of ``batches`` (L2-normalised unless ``normalize`` is false): written
    to the .npy ``path`` (atomically) and returned as its rows, or held in memory when no path
    is given."""
    if path is None:
        out = np.empty((m, embedding.dim), np.float32)
        embed_to(out, embedding, batches, device, normalize)
        return out
    with atomic_npy(path, (m, embedding.dim), np.float32) as out:
        embed_to(out, embedding, batches, device, normalize)
    return NpyRows.open(path)


def write_neighbors(features, k: int, path: Path, backend: str, seed: int = 0) -> NpyRows:
    """The M x k int32 neighbour table of ``features`` written to ``path`` a block of rows at a
    time (atomically), returned as its rows."""
    from .neighbors import neighbor_blocks

    with atomic_npy(path, (len(features), k), np.int32) as out:
        for a, idx in neighbor_blocks(features, k, backend, seed=seed):
            out[a:a + len(idx)] = np.asarray(idx, dtype=np.int32)
    return NpyRows.open(path)


def embedding_key(embedding, extra: dict | None = None) -> str:
    """A short hash of what decides an embedding's features: its name, class and settings."""
    desc = {"version": VERSION, "name": embedding.name, "class": type(embedding).__name__,
            "dim": embedding.dim, "settings": getattr(embedding, "settings", None), **(extra or {})}
    return hashlib.sha256(json.dumps(desc, sort_keys=True, default=str).encode()).hexdigest()[:10]


class InstanceStore:
    """The features and neighbour tables of one dataset under one embedding (module docstring)."""

    FEATURES = "features.npy"
    EMBEDDING = "embedding.safetensors"

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    @classmethod
    def for_data(cls, data, embedding, extra: dict | None = None) -> "InstanceStore":
        from ..io import cache_dir

        name = data.name.replace("/", "-").replace(":", "-")
        return cls(cache_dir() / "instances" / f"{name}-{data.fingerprint()}-{embedding_key(embedding, extra)}")

    @staticmethod
    def neighbors_name(k: int, backend: str) -> str:
        return f"neighbors-k{k}-{backend}.npy"

    def _lock(self):
        return file_lock(self.folder.with_name(self.folder.name + ".lock"))

    def embedding_state(self) -> dict[str, torch.Tensor] | None:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        path = self.folder / self.EMBEDDING
        try:
            return load_file(str(path)) if path.is_file() else None
        except (OSError, SafetensorError):
            return None

    def features(self, embedding, fit: Callable[[], None], batches: Callable[[], Iterable[torch.Tensor]], m: int,
                 device: torch.device | str = "cpu", normalize: bool = True) -> NpyRows:
        """The stored features of the M training instances, or computed now: the embedding is
        fitted (``fit``), its state stored, then ``batches()`` embedded into ``features.npy``
        (L2-normalised unless ``normalize`` is false: a store holds one kind, see ``for_data``'s
        ``extra``). A stored embedding state is loaded into ``embedding`` instead of fitting it again."""
        from ..io import atomic_write_bytes, tensors_blob

        path = self.folder / self.FEATURES

        def found():
            state = self.embedding_state()
            arr = NpyRows.open(path, (m, embedding.dim), np.float32)
            if state is None or arr is None:
                return None
            embedding.load_state_dict(state)
            return arr

        arr = found()
        if arr is not None:
            return arr
        with self._lock():
            arr = found()
            if arr is not None:
                return arr
            fit()
            self.folder.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(self.folder / self.EMBEDDING, tensors_blob(embedding.state_dict()))
            return embed_stream(embedding, batches(), m, path, device, normalize)

    def neighbors(self, features, k: int, backend: str, seed: int = 0) -> NpyRows:
        """The stored M x k table of ``features`` by ``backend``, or computed and stored now."""
        path = self.folder / self.neighbors_name(k, backend)
        shape = (len(features), k)
        arr = NpyRows.open(path, shape, np.int32)
        if arr is not None:
            return arr
        with self._lock():
            arr = NpyRows.open(path, shape, np.int32)
            if arr is not None:
                return arr
            return write_neighbors(features, k, path, backend, seed)


def rows_of(features, rows) -> np.ndarray:
    """Rows of an M x d tensor (any device) or array as a float32 NumPy array."""
    block = features[rows]
    if isinstance(block, torch.Tensor):
        return block.detach().cpu().float().numpy()
    return np.asarray(block, dtype=np.float32)


def streamed_representatives(features, count: int, seed: int = 0, batch: int = 16384, epochs: int = 2) -> np.ndarray:
    """Sorted indices of up to ``count`` rows that represent all M: mini-batch k-means
    (scikit-learn's ``MiniBatchKMeans.partial_fit``) over seeded random batches of rows, ``epochs``
    passes, then one pass in row order keeping each cluster's member nearest its centre (the
    lowest index on a tie). Holds a batch of rows and the centres, never all M features."""
    from sklearn.cluster import MiniBatchKMeans

    m = len(features)
    batch = max(batch, 3 * count)
    km = MiniBatchKMeans(n_clusters=count, batch_size=batch, random_state=seed, n_init=3,
                         reassignment_ratio=0.01)
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        order = rng.permutation(m)
        for a in range(0, m - count + 1, batch):
            km.partial_fit(rows_of(features, np.sort(order[a:a + batch])))
    best_d = np.full(count, np.inf)
    best_i = np.full(count, -1, np.int64)
    centres = km.cluster_centers_
    for a in range(0, m, batch):
        x = rows_of(features, slice(a, a + batch)).astype(np.float64)
        d2 = (x ** 2).sum(1)[:, None] - 2 * x @ centres.T + (centres ** 2).sum(1)[None]
        label = d2.argmin(1)
        dist = d2[np.arange(len(x)), label]
        for c in np.unique(label):
            mine = np.flatnonzero(label == c)
            j = mine[dist[mine].argmin()]
            if dist[j] < best_d[c]:
                best_d[c], best_i[c] = dist[j], a + j
    return np.sort(best_i[best_i >= 0])


def link_or_copy(src: Path, dst: Path) -> None:
    """``dst`` becomes the same file as ``src``: a hard link where the file system allows,
    else an atomic copy."""
    import shutil

    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
    os.replace(tmp, dst)


def write_json(path: Path, record: dict) -> None:
    atomic_write_text(Path(path), json.dumps(record, indent=1, sort_keys=True))


def cached_neighbours(data, settings: dict, make: Callable[[], torch.Tensor]) -> torch.Tensor:
    """A neighbour table of ``data`` made by ``make()`` once and kept in the cache under ``settings``
    (what decides it: the feature space, k, the device kind), so that a second start or a resume of
    the same run reads it back instead of searching again."""
    from ..io import cache_dir, cached

    name = data.name.replace("/", "-").replace(":", "-")
    key = hashlib.sha256(json.dumps({"version": VERSION, **settings}, sort_keys=True, default=str).encode()).hexdigest()[:10]
    folder = cache_dir() / "neighbours" / f"{name}-{data.fingerprint()}-{key}"

    def build():
        table = make().cpu()
        return table, {"neighbors": table}, {"dataset": data.name, "settings": settings}

    return cached(folder, "neighbors.safetensors", lambda tensors, meta: tensors["neighbors"], build)
