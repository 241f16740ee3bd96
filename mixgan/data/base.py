"""The in-memory dataset every model trains on."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch



@dataclass(frozen=True)
class DataSpec:
    """What a model needs to know about its data to be built: saved with every checkpoint."""

    name: str
    shape: tuple[int, ...]
    num_classes: int = 0
    kind: str = "image"
    cond_dim: int = 0

    @classmethod
    def from_dict(cls, d: dict) -> "DataSpec":
        return cls(d["name"], tuple(d["shape"]), d.get("num_classes", 0), d.get("kind", "image"), d.get("cond_dim", 0))


@dataclass
class Dataset:
    """Train and test tensors. Images are float32 N x C x H x W in [-1, 1]; points are N x D.

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

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def spec(self) -> DataSpec:
        cond_dim = self.cond_train.shape[1] if self.cond_train is not None else 0
        return DataSpec(self.name, self.shape, self.num_classes, self.kind, cond_dim)

    @property
    def is_image(self) -> bool:
        return self.kind == "image"

    def fingerprint(self) -> str:
        """A hash of the files (or generating settings) behind this dataset, for caches."""
        import hashlib

        h = hashlib.sha256(self.name.encode())
        for path in sorted(self.files):
            st = path.stat()
            h.update(f"{path.name}:{st.st_size}".encode())
            with open(path, "rb") as fh:
                h.update(fh.read(1 << 20))
        if not self.files:
            h.update(str(tuple(self.x_train.shape)).encode())
            h.update(self.x_train[:64].numpy().tobytes())
        return h.hexdigest()[:16]


def split(x: torch.Tensor, y: torch.Tensor | None, test_fraction: float, seed: int):
    """A fixed, seeded train/test split for data that ships without one."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(x), generator=g)
    n_test = max(1, int(round(len(x) * test_fraction)))
    te, tr = perm[:n_test], perm[n_test:]
    return x[tr], x[te], (y[tr] if y is not None else None), (y[te] if y is not None else None)
