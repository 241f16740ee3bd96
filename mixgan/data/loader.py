"""Reading batches of data stored on disk (shards) in DataLoader worker processes.

Batch b is ``read(b)`` (a pure function of b, see :mod:`mixgan.data.batches`), so what a batch
holds does not depend on the number of workers. Workers read and stack uint8 images; the float
conversion happens on the device.
"""
from __future__ import annotations

import itertools
import os
from typing import Callable, Iterator

import torch
from torch.utils.data import DataLoader, Sampler


def default_workers() -> int:
    """min(4, CPUs - 1): leaves one CPU for the training process."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    return max(0, min(4, cpus - 1))


class _Batches(torch.utils.data.Dataset):
    """Item b = ``read(b)``."""

    def __init__(self, read: Callable[[int], tuple]):
        self.read = read

    def __getitem__(self, b: int):
        return self.read(b)


class _From(Sampler):
    """Batch numbers start, start + 1, ... (the loop draws as many as its steps need)."""

    def __init__(self, start: int):
        self.start = start

    def __iter__(self):
        return itertools.count(self.start)


def read_batches(read: Callable[[int], tuple], start: int, workers: int, pin: bool = False) -> Iterator[tuple]:
    """``read(start)``, ``read(start + 1)``, ... computed ahead by ``workers`` processes
    (``default_workers()`` where negative; 0: in this process), in order."""
    workers = default_workers() if workers < 0 else workers
    loader = DataLoader(_Batches(read), sampler=_From(start), batch_size=None, num_workers=workers,
                        pin_memory=pin, prefetch_factor=2 if workers else None)
    return iter(loader)
