"""The in-memory dataset every model trains on, and the one conversion of stored images to floats."""
from __future__ import annotations

from dataclasses import dataclass, field
import os
from pathlib import Path

import torch


def shown(path) -> str:
    """A file name as messages print it: as is, or quoted and escaped (``repr``) where it holds a
    character that is not printable (a newline could otherwise forge a line of output)."""
    text = str(path)
    return text if text.isprintable() else repr(text)


def to_float(x: torch.Tensor, levels: int = 255) -> torch.Tensor:
    """Stored images as float32 in [-1, 1], on the device ``x`` is on: uint8 ``0..levels`` maps
    linearly onto [-1, 1] (``levels`` is 255 for every dataset but scikit-learn's digits, 16);
    float tensors (points, or images given as floats) are returned as float32 unchanged."""
    if x.dtype == torch.uint8:
        return x.float() / (levels / 2) - 1.0
    return x.float()


@dataclass(frozen=True)
class DataSpec:
    """What a model needs to know about its data to be built: saved with every checkpoint."""

    name: str
    shape: tuple[int, ...]
    num_classes: int = 0
    kind: str = "image"
    cond_dim: int = 0
    class_names: tuple[str, ...] = ()  # the classes' names where the data has them (folders, shards), else ()

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "num_classes": self.num_classes, "kind": self.kind,
                "cond_dim": self.cond_dim, "class_names": list(self.class_names)}

    @classmethod
    def from_dict(cls, d: dict) -> "DataSpec":
        names = d.get("class_names") or ()  # absent in checkpoints written before names were kept
        names = tuple(str(v) for v in names) if isinstance(names, (list, tuple)) else ()
        return cls(d["name"], tuple(d["shape"]), d.get("num_classes", 0), d.get("kind", "image"), d.get("cond_dim", 0),
                   names)


@dataclass
class Dataset:
    """Train and test tensors as stored: images are uint8 N x C x H x W with values ``0..levels``
    (or float32 in [-1, 1] where a file gave floats), points are float32 N x D. :meth:`images`
    gives them as floats in [-1, 1]; models convert batch by batch on their device (:func:`to_float`).

    ``cond_train``/``cond_test`` hold real-valued conditions for vector-conditioned data.
    ``centers`` and ``std`` describe a toy mixture's modes.
    """

    name: str
    x_train: torch.Tensor
    x_test: torch.Tensor
    y_train: torch.Tensor | None = None
    y_test: torch.Tensor | None = None
    num_classes: int = 0
    kind: str = "image"  # image | points
    centers: torch.Tensor | None = None
    std: float | None = None
    files: list[Path] = field(default_factory=list)
    cond_train: torch.Tensor | None = None
    cond_test: torch.Tensor | None = None
    levels: int = 255
    skipped: int = 0  # unreadable files left out when loading
    variant: str = ""  # set where the images were resized or recoloured on loading: part of the fingerprint
    class_names: tuple[str, ...] = ()  # the classes' names (folder names, a shard manifest's), else ()

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def spec(self) -> DataSpec:
        cond_dim = self.cond_train.shape[1] if self.cond_train is not None else 0
        return DataSpec(self.name, self.shape, self.num_classes, self.kind, cond_dim, tuple(self.class_names))

    def images(self, split: str = "train", index: torch.Tensor | None = None) -> torch.Tensor:
        """A split (or its rows ``index``) as float32, images in [-1, 1]."""
        x = self.x_train if split == "train" else self.x_test
        if index is None and not isinstance(x, torch.Tensor):  # read on demand (shards): all of it
            index = slice(None)
        return to_float(x if index is None else x[index], self.levels)

    @property
    def streamed(self) -> bool:
        """Images read on demand (shards), not held in memory: training streams them through a DataLoader."""
        return not isinstance(self.x_train, torch.Tensor)

    @property
    def is_image(self) -> bool:
        return self.kind == "image"

    def fingerprint(self) -> str:
        """A hash of the files (or generating settings) behind this dataset, for caches: every file's
        path, size and modification time (a stat each, so a folder of a million images is cheap), so
        a file added, removed, replaced or edited gives another fingerprint; with the sizes of the
        train and test splits, so that another ``data.test_fraction`` does too."""
        import hashlib

        h = hashlib.sha256(self.name.encode())
        if self.variant:
            h.update(self.variant.encode())
        h.update(f"split {len(self.x_train)}/{len(self.x_test)}\n".encode())  # data.test_fraction
        for path in sorted(self.files):
            st = path.stat()
            h.update(f"{os.fsencode(path)!r}:{st.st_size}:{st.st_mtime_ns}\n".encode())
        if not self.files:
            h.update(str(tuple(self.x_train.shape)).encode())
            h.update(self.images("train", torch.arange(min(64, len(self.x_train)))).numpy().tobytes())
        return h.hexdigest()[:16]


SPLIT_SEED = 1234  # a split the data does not ship with belongs to the data, not to the training seed


def split_rows(n: int, test_fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(train rows, test rows) of data of ``n`` items that ships without a split: a draw by
    ``SPLIT_SEED``, so that every training seed holds out the same items (the caches of row-indexed
    tables, such as neighbour lists, and the reference classifier rely on it); each side keeps at
    least one item."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(SPLIT_SEED))
    n_test = min(n - 1, max(1, int(round(n * test_fraction))))
    return perm[n_test:], perm[:n_test]


def split(x: torch.Tensor, y: torch.Tensor | None, test_fraction: float):
    """(x_train, x_test, y_train, y_test) by :func:`split_rows`."""
    tr, te = split_rows(len(x), test_fraction)
    return x[tr], x[te], (y[tr] if y is not None else None), (y[te] if y is not None else None)
