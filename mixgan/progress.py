"""Announcing slow preparations without printing from the library.

Work that may take more than a few seconds (training a reference classifier or an encoder,
embedding a data set, a neighbour search) runs inside ``with progress.task(what, total, eta=s)``
and calls ``advance(n)`` as it goes. The library only reports to the current reporter; the CLI
installs one that prints a line when a task starts (what, and roughly how long) and a bar on a
terminal. Without a reporter (the Python API, tests) nothing is shown.
"""
from __future__ import annotations

import contextlib
import time
from typing import Iterator, Protocol


class Reporter(Protocol):
    def begin(self, what: str, total: int | None, eta: float | None) -> None: ...
    def advance(self, done: int) -> None: ...
    def end(self, seconds: float) -> None: ...


class Task:
    """A running task: ``advance(n)`` adds n units of work done."""

    def __init__(self, reporter: Reporter | None):
        self.reporter, self.done = reporter, 0

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self.reporter is not None:
            self.reporter.advance(self.done)


_reporter: Reporter | None = None


def set_reporter(reporter: Reporter | None) -> Reporter | None:
    """Install ``reporter`` for every later task; returns the previous one."""
    global _reporter
    previous, _reporter = _reporter, reporter
    return previous


@contextlib.contextmanager
def task(what: str, total: int | None = None, eta: float | None = None) -> Iterator[Task]:
    """A slow piece of work named ``what`` (``total`` units, about ``eta`` seconds if known)."""
    reporter, start = _reporter, time.perf_counter()
    if reporter is not None:
        reporter.begin(what, total, eta)
    try:
        yield Task(reporter)
    finally:
        if reporter is not None:
            reporter.end(time.perf_counter() - start)
