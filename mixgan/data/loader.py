"""Streaming training batches from data read on demand (shards) through torch's DataLoader.

Batch b's indices are a pure function of b (``order(b)``: the training loop's per-epoch
permutation of this rank's part of the data), so the images a batch holds do not depend on the
number of workers, and a run resumed at batch b reads what an uninterrupted run would have read.
Ranks take disjoint parts (index = rank mod world size): across ranks, every image is seen once
per epoch. Workers read and stack uint8 images; the float conversion happens on the device
(:func:`mixgan.data.to_float`, in the model).
"""
from __future__ import annotations

import itertools
import os
from typing import Callable

import torch
from torch.utils.data import DataLoader, Sampler

from ..errors import MixganError


def default_workers() -> int:
    """min(4, CPUs - 1): leaves one CPU for the training process."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    return max(0, min(4, cpus - 1))


class _Batches(torch.utils.data.Dataset):
    """Item b = (b, uint8 images, labels or None, indices) of batch b."""

    def __init__(self, images, labels: torch.Tensor | None, order: Callable[[int], torch.Tensor]):
        self.images, self.labels, self.order = images, labels, order

    def __getitem__(self, b: int):
        index = self.order(b).cpu()
        x = torch.from_numpy(self.images.read(index.numpy()))
        y = self.labels[index] if self.labels is not None else None
        return b, x, y, index


class _From(Sampler):
    """Batch numbers start, start + 1, ... (the loop draws as many as its steps need)."""

    def __init__(self, start: int):
        self.start = start

    def __iter__(self):
        return itertools.count(self.start)


class StreamedBatches:
    """Batches of a streamed split in order from batch ``start``: ``get(b)`` gives (x uint8, y, the
    images' indices) on ``device``; b must be the next batch (the position is the training step's)."""

    def __init__(self, images, labels, order: Callable[[int], torch.Tensor], start: int, workers: int,
                 device: torch.device):
        workers = default_workers() if workers < 0 else workers
        self.device, self.next = torch.device(device), start
        pin = self.device.type == "cuda"
        self.loader = DataLoader(_Batches(images, labels, order), sampler=_From(start), batch_size=None,
                                 num_workers=workers, pin_memory=pin, prefetch_factor=2 if workers else None)
        self.workers = workers
        self._it = iter(self.loader)

    def get(self, b: int) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        if b != self.next:
            raise MixganError(f"streamed batches are read in order: batch {b} asked, {self.next} is next")
        got, x, y, index = next(self._it)
        self.next += 1
        x = x.to(self.device, non_blocking=True)
        return (x, (y.to(self.device, non_blocking=True) if y is not None else None),
                index.to(self.device, non_blocking=True))

    def close(self) -> None:
        """Stop the worker processes."""
        self._it = None
