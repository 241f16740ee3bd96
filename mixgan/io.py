"""Files every room writes: atomic writes, and the on-disk cache of trained helper networks.

Atomic: a file is written under a temporary name, flushed, fsynced and renamed, so a reader sees
the old file or the whole new one, never half. The cache (``$MIXGAN_CACHE``, default
``~/.cache/mixgan``) holds one folder per trained network (the reference classifier, the
self-supervised embedding): ``<weights>.safetensors`` and ``meta.json``, written under a file
lock so parallel processes (pytest-xdist workers, torchrun ranks) train it once, and checked by
the weights' SHA-256 so a damaged entry is retrained, never trusted.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Callable, TypeVar

import torch

from .errors import MixganError

T = TypeVar("T")


_write = os.write  # every byte mixgan writes into a run passes here (tests inject disk errors)


def write_error(path: Path | str, exc: OSError) -> MixganError:
    """The one-line error of a failed write: ``cannot write PATH (No space left on device)``."""
    return MixganError(f"cannot write {path} ({exc.strerror or exc})")


def _write_all(fd: int, data) -> None:
    view = memoryview(data).cast("B")
    while view:
        view = view[_write(fd, view):]


def atomic_write_bytes(path: Path, data: bytes | list) -> None:
    """Write ``data`` (bytes, or a list of buffers written one after the other, so a large array
    needs no joined copy) to ``path`` atomically; on any failure, a signal included, the temporary
    file is removed and an OSError becomes a MixganError naming ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            for part in (data if isinstance(data, list) else [data]):
                _write_all(fd, part)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as exc:
        with suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError):
            raise write_error(path, exc) from None
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def append_bytes(path: Path, data: bytes) -> None:
    """Append ``data`` to ``path`` (created if missing); a failed write is a MixganError naming it."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            _write_all(fd, data)
        finally:
            os.close(fd)
    except OSError as exc:
        raise write_error(path, exc) from None


def cache_dir() -> Path:
    """``$MIXGAN_CACHE`` or ``~/.cache/mixgan``."""
    return Path(os.environ.get("MIXGAN_CACHE") or Path.home() / ".cache" / "mixgan").expanduser()


@contextmanager
def file_lock(path: Path):
    """An exclusive advisory lock held for the block (blocks until the other holder is done)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def tensors_blob(tensors: dict[str, torch.Tensor]) -> bytes:
    """Safetensors bytes of CPU copies (whatever device the tensors were on)."""
    from safetensors.torch import save

    return save({k: v.detach().cpu().contiguous() for k, v in tensors.items()})


def read_cached(folder: Path, weights: str, read: Callable[[dict[str, torch.Tensor], dict], T | None]) -> T | None:
    """``read(tensors, meta)`` of a cache folder, or None where it is missing, damaged or its
    weights do not match the SHA-256 in meta.json (``read`` returns None for a stale entry)."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        meta = json.loads((folder / "meta.json").read_text())
        blob = (folder / weights).read_bytes()
        if hashlib.sha256(blob).hexdigest() != meta["weights_sha256"]:
            return None
        return read(load(blob), meta)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, SafetensorError):
        return None


def cached(folder: Path, weights: str, read: Callable[[dict[str, torch.Tensor], dict], T | None],
           make: Callable[[], tuple[T, dict[str, torch.Tensor], dict]]) -> T:
    """The cached object of ``folder``, or ``make()``'s, stored there for the next caller.

    ``make`` returns (object, tensors to store, meta); the weights' SHA-256 is added to meta as
    ``weights_sha256``. Only one process builds it: the others wait on the lock, then read it.
    """
    found = read_cached(folder, weights, read)
    if found is not None:
        return found
    with file_lock(folder.with_name(folder.name + ".lock")):
        found = read_cached(folder, weights, read)  # another process may have built it while we waited
        if found is not None:
            return found
        obj, tensors, meta = make()
        blob = tensors_blob(tensors)
        meta["weights_sha256"] = hashlib.sha256(blob).hexdigest()
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(folder / weights, blob)
        atomic_write_text(folder / "meta.json", json.dumps(meta, indent=1))
        return obj
