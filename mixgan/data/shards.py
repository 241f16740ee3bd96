"""Image datasets larger than memory: uint8 ``.npy`` shards with a JSON manifest.

Layout of a shard folder (written by :class:`ShardWriter`, ``mixgan data pack``)::

    manifest.json             format, version, shape, levels, classes, per split: count, shards
    train-00000.npy ...       uint8 N x C x H x W (plain NumPy .npy, no pickle)
    train-labels.npy          int32 labels of the split, in shard order (when the data has classes)
    test-00000.npy ...

Each shard's SHA-256 and size are in the manifest. Opening a folder checks every shard's size and
.npy header (cheap) and its SHA-256 (once per file version: the result is cached by path, size
and modification time under ``$MIXGAN_CACHE/shards-verified``); ``mixgan data verify`` rehashes
everything. Images are read with ``os.pread`` at the offset the header gives, so a process holds
only the images it asked for: its memory does not grow with the number of images.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import re
import stat
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..errors import MixganError
from ..io import atomic_write_bytes, atomic_write_text, cache_dir
from .base import shown
from .npz import MAX_CLASSES
from .rows import NpyRows, npy_header

FORMAT = "mixgan-shards"
VERSION = 1
MANIFEST = "manifest.json"
DEFAULT_SHARD_SIZE = 10_000
SPLITS = ("train", "test")


def _sha256(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


LOCK = ".pack.lock"  # held by the writer while it packs; removed when it is done
_SHARD_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\.npy")  # a plain file name inside the folder
_LEFTOVER = re.compile(r"(train|test)-(\d{5}|labels)\.npy|\..+\.tmp-\d+")  # what an unfinished pack leaves


class ShardWriter:
    """Writes uint8 images (and labels) of each split into shards of ``shard_size`` images;
    :meth:`close` writes the manifest last, so a folder without one is an unfinished pack.

    ``out`` must be new or empty (the leftovers of a killed pack, shards without a manifest, are
    cleared) and must not lie inside ``source_folder``. The writer holds ``out``'s lock from its
    creation to :meth:`close` or :meth:`abort`, so two packs never write into one folder. Used as a
    context manager, any failure (a signal included) aborts: the files written are removed."""

    def __init__(self, out: str | Path, shape: tuple[int, int, int], shard_size: int = DEFAULT_SHARD_SIZE,
                 classes: list[str] | None = None, source: str = "", source_folder: str | Path | None = None):
        if shard_size < 1:
            raise MixganError(f"--shard-size must be >= 1, got {shard_size}")
        self.out, self.shape, self.shard_size = Path(out), tuple(int(s) for s in shape), shard_size
        self.classes, self.source = list(classes or []), source
        self.pending = {s: [] for s in SPLITS}
        self.pending_count = {s: 0 for s in SPLITS}
        self.shards = {s: [] for s in SPLITS}
        self.labels = {s: [] for s in SPLITS}
        self.written: list[Path] = []
        self._lock, self._created = None, None
        self._open(source_folder)

    def _open(self, source_folder) -> None:
        from filelock import FileLock, Timeout

        out = self.out
        try:
            if source_folder is not None:
                src, dst = Path(source_folder).resolve(), out.resolve()
                if dst == src or src in dst.parents:
                    raise MixganError(f"{shown(out)} lies inside the source folder {shown(source_folder)}; "
                                      "write the shards elsewhere")
            if out.exists() and not out.is_dir():
                raise MixganError(f"{shown(out)} is a file, not a folder: name a new or empty folder for the shards")
            missing = [p for p in (out, *out.parents) if not p.exists()]
        except OSError as exc:  # a name too long, a parent that is a file
            raise MixganError(f"cannot write shards into {shown(out)} ({exc.strerror or exc})") from None
        try:
            out.mkdir(parents=True, exist_ok=True)
            self._created = missing[-1] if missing else None  # the topmost folder this writer made
            lock = FileLock(out / LOCK, timeout=0, thread_local=False)
            lock.acquire()
        except Timeout:
            raise MixganError(f"{shown(out)} is being written by another `mixgan data pack`; "
                              "wait for it or choose another folder") from None
        except OSError as exc:
            self._remove_created()
            raise MixganError(f"cannot write shards into {shown(out)} ({exc.strerror or exc})") from None
        self._lock = lock
        try:
            names = sorted(p.name for p in out.iterdir() if p.name != LOCK)
            if MANIFEST in names:
                raise MixganError(f"{shown(out)} already holds packed shards; choose another folder")
            if any(not _LEFTOVER.fullmatch(n) for n in names):
                raise MixganError(f"{shown(out)} is not empty ({len(names)} entries); name a new or empty folder "
                                  "for the shards")
            for n in names:  # an unfinished pack's shards (its writer is gone: we hold the lock)
                (out / n).unlink()
        except BaseException:
            self._release()
            raise

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, kind, exc, tb) -> None:
        if kind is not None:
            self.abort()

    def add(self, split: str, x: np.ndarray, y: np.ndarray | None = None) -> None:
        """Append uint8 images ``x`` (N x C x H x W) and their labels to ``split``."""
        x = np.asarray(x)
        if x.dtype != np.uint8 or x.shape[1:] != self.shape:
            raise MixganError(f"shards hold uint8 images of shape {self.shape}, got {x.dtype} {x.shape[1:]}")
        if (y is None) != (not self.classes):
            raise MixganError("labels are needed exactly when the data has classes")
        if y is not None:
            self.labels[split].append(np.asarray(y, np.int32))
        self.pending[split].append(x)
        self.pending_count[split] += len(x)
        while self.pending_count[split] >= self.shard_size:
            self._flush(split, self.shard_size)

    def _flush(self, split: str, n: int) -> None:
        whole = np.concatenate(self.pending[split]) if len(self.pending[split]) > 1 else self.pending[split][0]
        part, rest = whole[:n], whole[n:]
        self.pending[split] = [rest] if len(rest) else []
        self.pending_count[split] = len(rest)
        name = f"{split}-{len(self.shards[split]):05d}.npy"
        self.shards[split].append(self._save(name, np.ascontiguousarray(part)))

    def _save(self, name: str, array: np.ndarray) -> dict:
        """One .npy file written atomically (:func:`mixgan.io.atomic_write_bytes`: a temporary file
        removed on any failure, signals included)."""
        path = self.out / name
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(header, np.lib.format.header_data_from_array_1_0(array))
        self.written.append(path)
        atomic_write_bytes(path, [header.getvalue(), array])
        digest = _sha256(path)
        _remember_verified(path, digest)
        return {"file": name, "count": int(len(array)), "bytes": path.stat().st_size, "sha256": digest}

    def close(self) -> dict:
        """Write the last shards, the labels and the manifest; returns the manifest. On failure the
        files written are removed (:meth:`abort`)."""
        try:
            splits = {}
            for split in SPLITS:
                if self.pending_count[split]:
                    self._flush(split, self.pending_count[split])
                count = sum(s["count"] for s in self.shards[split])
                entry = {"count": count, "shards": self.shards[split]}
                if self.classes and count:
                    entry["labels"] = self._save(f"{split}-labels.npy", np.concatenate(self.labels[split]))
                splits[split] = entry
            if not splits["train"]["count"]:
                raise MixganError(f"{shown(self.out)}: no training images to pack")
            manifest = {"format": FORMAT, "version": VERSION, "shape": list(self.shape), "dtype": "uint8",
                        "levels": 255, "classes": self.classes, "source": self.source, "splits": splits}
            atomic_write_text(self.out / MANIFEST, json.dumps(manifest, indent=1))
        except BaseException:
            self.abort()
            raise
        self._release()
        return manifest

    def abort(self) -> None:
        """Remove every file written (and the folder where this writer made it); release the lock."""
        for path in self.written:
            with contextlib.suppress(OSError):
                path.unlink()
        self.written = []
        self._release()
        self._remove_created()

    def _remove_created(self) -> None:
        if self._created is None:
            return
        for folder in (self.out, *self.out.parents):  # empty folders up to the topmost one made here
            with contextlib.suppress(OSError):
                folder.rmdir()
            if folder == self._created:
                break
        self._created = None

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            with contextlib.suppress(OSError):
                (self.out / LOCK).unlink()
            self._lock = None


def read_manifest(folder: str | Path) -> dict:
    """A shard folder's manifest, checked for format and version."""
    path = Path(folder) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise MixganError(f"{shown(folder)}: no {MANIFEST} (not a folder written by `mixgan data pack`)") from None
    except (OSError, ValueError, RecursionError) as exc:
        raise MixganError(f"{shown(path)}: unreadable manifest ({' '.join(str(exc).split())[:200]})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise MixganError(f"{shown(path)}: not a mixgan shard manifest")
    version = manifest.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise MixganError(f"{shown(path)}: shard format version {version} is newer than this mixgan reads ({VERSION}); "
                          "upgrade mixgan")
    try:
        shape = manifest["shape"]
        assert isinstance(shape, list) and len(shape) == 3 and all(type(v) is int for v in shape)
        assert shape[0] in (1, 3) and 1 <= shape[1] <= 65_536 and 1 <= shape[2] <= 65_536
        assert manifest["dtype"] == "uint8" and isinstance(manifest.get("classes", []), list)
        for split in SPLITS:
            entry = manifest["splits"][split]
            files = entry["shards"] + ([entry["labels"]] if "labels" in entry else [])
            for e in files:
                assert isinstance(e, dict) and isinstance(e["file"], str) and _count(e["bytes"])
                assert isinstance(e["sha256"], str) and (e is entry.get("labels") or _count(e["count"]))
            assert type(entry["count"]) is int and sum(s["count"] for s in entry["shards"]) == entry["count"]
    except (KeyError, TypeError, ValueError, AssertionError):
        raise MixganError(f"{shown(path)}: malformed manifest") from None
    names = [e["file"] for s in SPLITS for e in manifest["splits"][s]["shards"] + (
        [manifest["splits"][s]["labels"]] if "labels" in manifest["splits"][s] else [])]
    for name in names:
        if not _SHARD_NAME.fullmatch(name) or name == MANIFEST:
            raise MixganError(f"{shown(path)}: shard name {name!r} is not a plain .npy file name in the folder: refused")
    if len(set(names)) != len(names):
        raise MixganError(f"{shown(path)}: a shard is named twice: refused")
    classes, total = manifest.get("classes") or [], sum(manifest["splits"][s]["count"] for s in SPLITS)
    if len(classes) > min(total, MAX_CLASSES):
        raise MixganError(f"{shown(path)}: {len(classes)} classes for {total} images (at most one per image and "
                          f"{MAX_CLASSES}): refused")
    for split in SPLITS:
        if bool(classes) != ("labels" in manifest["splits"][split]) and manifest["splits"][split]["count"]:
            raise MixganError(f"{shown(path)}: the {split} split {'lacks' if classes else 'has'} a label file "
                              f"but the manifest names {len(classes)} classes: refused")
    return manifest


def _count(value) -> bool:
    """Whether a manifest field is a whole number >= 0 (not a bool, a float or a string)."""
    return type(value) is int and value >= 0


def _verified_stamp(path: Path) -> Path:
    st = path.stat()
    key = hashlib.sha256(f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:32]
    return cache_dir() / "shards-verified" / key


def _remember_verified(path: Path, digest: str) -> None:
    stamp = _verified_stamp(path)
    stamp.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(stamp, digest)


def check_shard(folder: Path, entry: dict, shape: tuple[int, ...], dtype, full: bool = False,
                use_cache: bool = True) -> None:
    """Refuse a shard whose size, header or (``full``) SHA-256 does not match its manifest entry.
    A hash that matched once is remembered for that file version unless ``use_cache`` is False."""
    path = folder / entry["file"]
    if not _SHARD_NAME.fullmatch(str(entry["file"])):
        raise MixganError(f"{shown(path)}: not a plain .npy file name in the folder: refused")
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode):  # a link, a FIFO, a device: never followed or opened
            raise MixganError(f"{shown(path)}: not a regular file (a link, FIFO or device): refused")
        size = st.st_size
        found_shape, found_dtype, offset = npy_header(path)
    except FileNotFoundError:
        raise MixganError(f"{shown(path)}: shard missing") from None
    except (OSError, ValueError):  # the reason would quote the file's bytes: not shown
        raise MixganError(f"{shown(path)}: not a readable .npy shard (no valid .npy header)") from None
    want = (int(entry["count"]), *shape)
    expected = offset + math.prod(want) * np.dtype(dtype).itemsize
    if found_shape != want or found_dtype != np.dtype(dtype) or size != expected or size != int(entry["bytes"]):
        raise MixganError(f"{shown(path)}: shard does not match the manifest (shape {found_shape} of {found_dtype}, "
                          f"{size} bytes; expected {want} of {np.dtype(dtype)}, {entry['bytes']} bytes): refused")
    if not full:
        return
    stamp = _verified_stamp(path)
    if use_cache and stamp.is_file() and stamp.read_text() == entry["sha256"]:
        return
    if _sha256(path) != entry["sha256"]:
        raise MixganError(f"{shown(path)}: SHA-256 does not match the manifest (damaged or changed shard): refused")
    _remember_verified(path, entry["sha256"])


def verify(folder: str | Path, use_cache: bool = False, progress: Callable[[int, int], None] | None = None) -> dict:
    """Check every shard (and label file) of a folder in full; returns the manifest."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    shape = tuple(manifest["shape"])
    work = [(e, shape, np.uint8) for s in SPLITS for e in manifest["splits"][s]["shards"]]
    work += [(manifest["splits"][s]["labels"], (), np.int32) for s in SPLITS if "labels" in manifest["splits"][s]]
    for i, (entry, shp, dtype) in enumerate(work):
        if shp == ():  # a label file: one int32 per image of its split
            split = entry["file"].split("-")[0]
            entry = dict(entry, count=manifest["splits"][split]["count"])
        check_shard(folder, entry, shp, dtype, full=True, use_cache=use_cache)
        if progress is not None:
            progress(i + 1, len(work))
    return manifest


class ShardArray:
    """A split's images, read on demand: ``len``, ``shape``, ``dtype`` and ``x[index]`` (uint8 tensor).

    Picklable (worker processes reopen the files); ``channels`` converts on reading (1 -> 3 repeats
    the grey plane, 3 -> 1 takes the luma of ITU-R 601, as PIL's convert("L"))."""

    def __init__(self, folder: Path, entries: list[dict], shape: tuple[int, int, int], channels: int = 0):
        self.folder, self.entries, self.stored = Path(folder), entries, tuple(shape)
        self.out_channels = channels or shape[0]
        counts = [int(e["count"]) for e in entries]
        self.starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.item = int(np.prod(shape))
        self.files = [NpyRows(self.folder / e["file"]) for e in entries]

    def __len__(self) -> int:
        return int(self.starts[-1])

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), self.out_channels, *self.stored[1:])

    dtype = torch.uint8
    ndim = 4

    def read(self, index) -> np.ndarray:
        """uint8 images ``index`` (any integer sequence) in that order, N x C x H x W."""
        index = np.asarray(index, dtype=np.int64).reshape(-1)
        n = len(self)
        if len(index) and (index.min() < -n or index.max() >= n):
            raise IndexError(f"index out of range for {n} images")
        index = np.where(index < 0, index + n, index)
        out = np.empty((len(index), *self.stored), np.uint8)
        flat = out.reshape(len(index), -1)
        shard = np.searchsorted(self.starts, index, side="right") - 1
        for row, (i, s) in enumerate(zip(index.tolist(), shard.tolist())):
            try:
                self.files[s].read_into(flat[row], (i - int(self.starts[s])) * self.item)
            except OSError:
                raise MixganError(f"{shown(self.folder / self.entries[s]['file'])}: truncated shard") from None
        return convert_channels(out, self.out_channels)

    def __getitem__(self, index) -> torch.Tensor:
        if isinstance(index, slice):
            index = range(*index.indices(len(self)))
        if isinstance(index, torch.Tensor):
            index = index.cpu().numpy()
        if np.isscalar(index):
            return torch.from_numpy(self.read([index])[0])
        return torch.from_numpy(self.read(index))

    def close(self) -> None:
        for f in self.files:
            f.close()


def convert_channels(x: np.ndarray, channels: int) -> np.ndarray:
    """uint8 N x C x H x W with 1 or 3 channels as ``channels`` channels."""
    if x.shape[1] == channels:
        return x
    if channels == 3:
        return np.repeat(x, 3, axis=1)
    x = x.astype(np.uint32)
    luma = (x[:, 0] * 299 + x[:, 1] * 587 + x[:, 2] * 114 + 500) // 1000
    return luma[:, None].astype(np.uint8)


def shard_dataset(folder: str | Path, seed: int = 0, test_fraction: float = 0.2, resolution: int = 0,
                  channels: int = 0, verify_hashes: bool = True):
    """``shards:DIR`` as a Dataset whose ``x_train``/``x_test`` are :class:`ShardArray`s (read on
    demand); training streams it through :func:`mixgan.data.loader.make_loader`."""
    from .base import Dataset

    folder = Path(folder).expanduser()
    manifest = read_manifest(folder)
    shape = tuple(manifest["shape"])
    if resolution and resolution != shape[1]:
        raise MixganError(f"{shown(folder)}: shards hold {shape[1]} px images, data.resolution is {resolution}; "
                          f"pack them again with --resolution {resolution}")
    for split in SPLITS:
        for entry in manifest["splits"][split]["shards"]:
            check_shard(folder, entry, shape, np.uint8, full=verify_hashes)
    labels = {}
    for split in SPLITS:
        entry = manifest["splits"][split].get("labels")
        if entry is not None:
            check_shard(folder, dict(entry, count=manifest["splits"][split]["count"]), (), np.int32,
                        full=verify_hashes)
            y = np.load(folder / entry["file"], allow_pickle=False).astype(np.int64)
            n = len(manifest.get("classes") or [])
            if len(y) and (y.min() < 0 or y.max() >= n):
                bad = int(y.min() if y.min() < 0 else y.max())
                raise MixganError(f"{shown(folder / entry['file'])}: label {bad} outside 0..{n - 1} "
                                  f"(the manifest names {n} classes): refused")
            labels[split] = torch.from_numpy(y)
    x_tr = ShardArray(folder, manifest["splits"]["train"]["shards"], shape, channels)
    x_te = ShardArray(folder, manifest["splits"]["test"]["shards"], shape, channels)
    classes = manifest.get("classes") or []
    files = [folder / MANIFEST] + [folder / e["file"] for s in SPLITS for e in manifest["splits"][s]["shards"]] + \
        [folder / manifest["splits"][s]["labels"]["file"] for s in SPLITS if "labels" in manifest["splits"][s]]
    return Dataset(f"shards:{folder}", x_tr, x_te, labels.get("train"), labels.get("test"),
                   num_classes=len(classes), files=files, class_names=tuple(str(c) for c in classes),
                   variant=f"{x_tr.shape[1]}x{shape[1]}x{shape[2]}" if channels and channels != shape[0] else "")
