"""Rows of a .npy file read on demand with ``os.pread``.

A memory map would do the same with less code, but every page it touches counts in the process's
resident memory, and the kernel maps the neighbouring pages of each fault too (fault-around): a
training step that reads 64 random rows of a million-row table leaves about a megabyte mapped,
and a long run ends up holding the whole file. Read with ``pread``, the file stays in the page
cache (shared, reclaimable) and the process holds only the rows it asked for, so its memory does
not grow with the number of rows.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch


def read_npy_header(fh) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) from the .npy header at ``fh``'s position; any malformed header (NumPy's
    parser raises several kinds of errors) is a ValueError."""
    try:
        version = np.lib.format.read_magic(fh)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(fh, max_header_size=10_000)
    except OSError:
        raise
    except Exception as exc:  # ValueError, SyntaxError, tokenize.TokenError, ...
        raise ValueError(f"malformed .npy header ({type(exc).__name__})") from None
    if fortran:
        raise ValueError("Fortran-ordered array")
    return tuple(shape), dtype


def npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, data offset) of a .npy file, read from its header alone."""
    with open(path, "rb") as fh:
        shape, dtype = read_npy_header(fh)
        return shape, dtype, fh.tell()


class NpyRows:
    """An N x ... array in a .npy file, indexed like a CPU tensor and read on demand.

    ``rows[index]`` (an int, a slice, or an integer array or tensor) and ``rows[index, column]``
    return tensors; an index tensor on another device gets its result there. ``len``, ``shape``,
    ``dtype`` and ``device`` (always the CPU) are those of a tensor. Picklable: a data-loader
    worker opens its own descriptor.
    """

    device = torch.device("cpu")

    def __init__(self, path: str | Path, shape: tuple[int, ...] | None = None, dtype=None, offset: int | None = None):
        self.path = Path(path)
        if shape is None or dtype is None or offset is None:
            shape, dtype, offset = npy_header(self.path)
        self.np_dtype = np.dtype(dtype)
        self._shape, self.offset = tuple(int(s) for s in shape), int(offset)
        self.row_bytes = int(np.prod(self._shape[1:], dtype=np.int64)) * self.np_dtype.itemsize
        self._fd, self._pid = None, None

    @classmethod
    def open(cls, path: Path, shape: tuple[int, ...] | None = None, dtype=None) -> "NpyRows | None":
        """The rows of a complete .npy file, or None where it is missing, cut short, or of another
        shape or type than asked."""
        try:
            found, found_dtype, offset = npy_header(path)
            size = Path(path).stat().st_size
        except (OSError, ValueError):
            return None
        if (shape is not None and tuple(found) != tuple(shape)) or (dtype is not None and found_dtype != np.dtype(dtype)) \
                or len(found) < 1 or size < offset + int(np.prod(found, dtype=np.int64)) * found_dtype.itemsize:
            return None
        return cls(path, found, found_dtype, offset)

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k not in ("_fd", "_pid")}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._fd, self._pid = None, None

    def __len__(self) -> int:
        return self._shape[0]

    @property
    def shape(self) -> torch.Size:
        return torch.Size(self._shape)

    @property
    def nbytes(self) -> int:
        return len(self) * self.row_bytes

    @property
    def dtype(self) -> torch.dtype:
        return torch.from_numpy(np.empty(0, self.np_dtype)).dtype

    def _descriptor(self) -> int:
        if self._pid != os.getpid():  # a forked worker: its own descriptor
            self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
        return self._fd

    def read_into(self, out: np.ndarray, pos: int) -> None:
        """Fill ``out`` (a contiguous array) with the bytes at ``pos`` of the data (OSError if cut short)."""
        view = memoryview(out.reshape(-1).view(np.uint8))
        got = os.preadv(self._descriptor(), [view], self.offset + pos)
        if got != len(view):
            raise OSError(f"{self.path}: file cut short")

    def rows(self, index) -> np.ndarray:
        """Rows ``index`` (a slice, or integer sequence; negatives count from the end) as an array."""
        n = len(self)
        if isinstance(index, slice):
            a, b, step = index.indices(n)
            if step == 1:
                out = np.empty((max(0, b - a), *self._shape[1:]), self.np_dtype)
                if len(out):
                    self.read_into(out, a * self.row_bytes)
                return out
            index = np.arange(a, b, step)
        index = np.asarray(index, dtype=np.int64).reshape(-1)
        if len(index) and (index.min() < -n or index.max() >= n):
            raise IndexError(f"row index out of range for {n} rows")
        index = np.where(index < 0, index + n, index)
        out = np.empty((len(index), *self._shape[1:]), self.np_dtype)
        for row, i in enumerate(index.tolist()):
            self.read_into(out[row], i * self.row_bytes)
        return out

    def __getitem__(self, key) -> torch.Tensor:
        column = None
        if isinstance(key, tuple):
            key, column = key
        device = key.device if isinstance(key, torch.Tensor) else self.device
        if isinstance(key, torch.Tensor):
            key = key.cpu().numpy()
        scalar = np.isscalar(key) or (isinstance(key, np.ndarray) and key.ndim == 0)
        out = torch.from_numpy(self.rows(np.reshape(key, 1) if scalar else key))
        if column is not None:
            column = torch.as_tensor(column).cpu()
            out = out[torch.arange(len(out)), column] if column.ndim else out[:, int(column)]
        return (out[0] if scalar else out).to(device)

    def all(self) -> torch.Tensor:
        """Every row, in memory."""
        return self[:]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        """Every row, in memory (``np.asarray(rows)``)."""
        out = self.rows(slice(None))
        return out if dtype is None else out.astype(dtype, copy=False)

    def close(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd, self._pid = None, None

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass


class NpyWriter:
    """A new .npy file of a given shape and type, filled by ``writer[a:b] = rows`` with ``os.pwrite``
    (dirty pages stay in the page cache, not in the process's memory as a writable memory map's
    would). ``len`` is the number of rows."""

    def __init__(self, path: str | Path, shape: tuple[int, ...], dtype):
        self.path, self.np_dtype, self.shape = Path(path), np.dtype(dtype), tuple(int(s) for s in shape)
        header = np.lib.format.open_memmap(self.path, mode="w+", dtype=self.np_dtype, shape=self.shape)
        self.offset = header.offset  # the header is written; the data is a hole until filled
        del header
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.np_dtype.itemsize
        self.fd = os.open(self.path, os.O_RDWR)

    def __len__(self) -> int:
        return self.shape[0]

    def __setitem__(self, rows: slice, values) -> None:
        a, b, step = rows.indices(len(self))
        block = np.ascontiguousarray(values, dtype=self.np_dtype)
        if step != 1 or block.shape != (b - a, *self.shape[1:]):
            raise ValueError(f"rows {a}:{b} take an array of shape {(b - a, *self.shape[1:])}, got {block.shape}")
        data, pos = memoryview(block.reshape(-1).view(np.uint8)), self.offset + a * self.row_bytes
        while len(data):
            done = os.pwrite(self.fd, data, pos)
            data, pos = data[done:], pos + done

    def close(self, sync: bool = True) -> None:
        """Flush to the disk (``sync``) and close."""
        if self.fd is None:
            return
        try:
            if sync:
                os.fsync(self.fd)
        finally:
            os.close(self.fd)
            self.fd = None
