"""SIGINT and SIGTERM during training: finish the step, save a checkpoint, then stop.

While training runs, :class:`StopRequest` replaces the two handlers (in the main thread only)
with one that records the signal; the loop checks it after every step, writes a checkpoint and
raises :class:`~mixgan.errors.Interrupted`. A second signal stops at once (KeyboardInterrupt).
Under torchrun every rank gets the signal; the ranks agree at the loop's next vote, so all of
them stop after the same step.
"""
from __future__ import annotations

import signal
import threading

import torch

from . import dist

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    def __init__(self):
        self.signum = 0
        self._previous: dict[int, object] = {}

    def install(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self._previous.clear()

    def _handle(self, signum, frame) -> None:
        if self.signum:
            raise KeyboardInterrupt
        self.signum = signum

    def agreed(self, vote: bool) -> bool:
        """Whether training stops after this step: at once in one process; under torchrun at a
        vote step (the same on every rank) where any rank got a signal."""
        if dist.world()[1] == 1:
            return bool(self.signum)
        return vote and dist.min_over_ranks(torch.tensor(0 if self.signum else 1)) == 0
