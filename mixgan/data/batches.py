"""Training batches: one source for data held in memory and data read on demand (shards).

Batch b's rows are a pure function of b: ``order(b)`` (the training loop's per-epoch permutation
of this rank's part of the data) names the instances, and :func:`pick_rows` decides which images
are read for them (the instances themselves, or a neighbour of each where the model declares a
neighbour table: :class:`Neighbours`). So the images a batch holds do not depend on where the data
lives or on the number of workers, and a run resumed at batch b reads what an uninterrupted run
would have read. Ranks take disjoint parts (index = rank mod world size): across ranks, every image
is seen once per epoch.

Held data is indexed where it lives (the model's device); data read on demand is read by
DataLoader workers (:mod:`mixgan.data.loader`) as uint8 and converted on the device. Either way a
model receives the same :class:`Rows`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from ..errors import MixganError
from .base import to_float

REAL = "real"  # the image shown for instance i is a random neighbour of i (IC-GAN)
PAIR = "pair"  # each image comes with one of its neighbours beside it (the encoder's pairs)


@dataclass(frozen=True)
class Neighbours:
    """A model's neighbour table (M x k rows, a tensor or rows of a file) and what it is read for:
    ``REAL`` or ``PAIR`` (see :func:`pick_rows`)."""

    table: Any
    role: str


@dataclass
class Rows:
    """What a batch source hands a model for batch b, on the model's device: the images ``x`` as
    floats in [-1, 1] with their labels ``y`` and condition vectors ``c`` (None where the data has
    none), the ``index`` of the instances the batch is for, and ``pair`` (a neighbour's image beside
    each, for ``PAIR`` tables)."""

    x: torch.Tensor
    index: torch.Tensor
    y: torch.Tensor | None = None
    c: torch.Tensor | None = None
    pair: torch.Tensor | None = None


def neighbour_pick(seed: int, b: int, n: int, k: int) -> torch.Tensor:
    """Which of its k neighbours each of batch b's n instances is shown with: uniform, drawn on the
    CPU by a generator seeded by (seed, b), so that a worker, a resumed run and held data pick alike."""
    g = torch.Generator().manual_seed((seed * 0x9E3779B1 + b * 7919 + 0x51ED) % (2 ** 63))
    return torch.randint(k, (n,), generator=g)


def pick_rows(index: torch.Tensor, neighbours: Neighbours | None, b: int, seed: int,
              d_steps: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(rows whose images batch b shows, rows of their pairs or None) for the batch's instances ``index``.

    ``REAL``: a random neighbour of each instance (:func:`neighbour_pick`). ``PAIR``: the instances
    themselves, each paired with neighbour (i + step) mod k of its row, step = b // d_steps."""
    if neighbours is None:
        return index, None
    table = neighbours.table
    k = table.shape[1]
    if neighbours.role == REAL:
        return table[index, neighbour_pick(seed, b, len(index), k).to(index.device)].long(), None
    pick = (index + b // d_steps) % k
    return index, table[index, pick].long()


@dataclass
class _Reader:
    """Batch b as stored: (instances, images, labels, conditions, pair images), for held data in this
    process, or (picklable) in a DataLoader worker."""

    images: Any
    labels: Any
    conditions: Any
    order: Callable[[int], torch.Tensor]
    neighbours: Neighbours | None
    seed: int
    d_steps: int

    def __call__(self, b: int, index: torch.Tensor | None = None) -> tuple:
        index = self.order(b) if index is None else index
        rows, pair = pick_rows(index, self.neighbours, b, self.seed, self.d_steps)
        return (index, self.images[rows], None if self.labels is None else self.labels[rows],
                None if self.conditions is None else self.conditions[rows], None if pair is None else self.images[pair])


def _host(neighbours: Neighbours | None) -> Neighbours | None:
    """The table where a worker can read it: a tensor on another device is copied to the CPU once."""
    if neighbours is None or not isinstance(neighbours.table, torch.Tensor) or neighbours.table.device.type == "cpu":
        return neighbours
    return Neighbours(neighbours.table.cpu(), neighbours.role)


class BatchSource:
    """Batch b of training (``get(b)`` -> :class:`Rows` on ``device``), read in order from batch ``start``.

    ``images``/``labels``/``conditions`` are held tensors (indexed where they are) or rows read on
    demand (``ShardArray``: read by ``workers`` DataLoader processes, ``default_workers()`` where
    negative). ``order(b)`` gives batch b's instances; ``neighbours`` what is read beside or instead
    of them; ``levels`` maps the stored uint8 values to [-1, 1]."""

    def __init__(self, images, labels, conditions, order: Callable[[int], torch.Tensor], device: torch.device,
                 neighbours: Neighbours | None = None, seed: int = 0, d_steps: int = 1, levels: int = 255,
                 start: int = 0, workers: int = 0):
        self.device, self.next, self.levels = torch.device(device), start, levels
        self.streamed = not isinstance(images, torch.Tensor)
        self._read = _Reader(images, labels, conditions, order, neighbours, seed, d_steps)
        self._it = None
        if self.streamed:
            from .loader import read_batches

            worker = _Reader(images, labels, conditions, order, _host(neighbours), seed, d_steps)
            self._it = read_batches(worker, start, workers, pin=self.device.type == "cuda")

    def read(self, b: int, index: torch.Tensor) -> Rows:
        """Batch b for the instances ``index`` of held data (any b, in any order)."""
        return self._rows(*self._read(b, index))

    def get(self, b: int) -> Rows:
        """Batch b; b must be the next batch (the position is the training step's)."""
        if b != self.next:
            raise MixganError(f"training batches are read in order: batch {b} asked, {self.next} is next")
        self.next += 1
        if not self.streamed:
            return self._rows(*self._read(b))
        move = (lambda t: None if t is None else t.to(self.device, non_blocking=True))
        return self._rows(*map(move, next(self._it)))

    def _rows(self, index, x, y, c, pair) -> Rows:
        return Rows(to_float(x, self.levels), index, y, None if c is None else c.float(),
                    None if pair is None else to_float(pair, self.levels))

    def close(self) -> None:
        """Stop the worker processes."""
        self._it = None
