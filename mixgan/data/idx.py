"""MNIST-style IDX files (plain or gzip), read with every header field checked."""
from __future__ import annotations

import zlib
import math
import struct
from pathlib import Path

import numpy as np
import torch

from ..errors import MixganError
from .base import Dataset, shown

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


MAX_EXPANSION = 256  # gzip data that would expand more than this is refused as a bomb (MNIST: about 5)


def _gunzip(path: Path, raw: bytes) -> bytes:
    """gzip data decompressed, at most :data:`MAX_EXPANSION` times its size: a bomb is refused
    before it fills memory."""
    limit = MAX_EXPANSION * len(raw)
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(raw, limit + 1)
        if len(out) <= limit and not d.eof:
            out += d.flush()
    except zlib.error as exc:
        raise MixganError(f"{shown(path)}: corrupt gzip data ({exc})") from None
    if len(out) > limit:
        raise MixganError(f"{shown(path)}: gzip data expands more than {MAX_EXPANSION} times: refused as a "
                          "decompression bomb")
    if not d.eof:
        raise MixganError(f"{shown(path)}: corrupt gzip data (truncated)")
    return out


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """An IDX file as an array; any malformed header or size is a MixganError naming the file."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise MixganError(f"{shown(path)}: file not found") from None
    except OSError as exc:
        raise MixganError(f"{shown(path)}: cannot read ({exc.strerror})") from None
    if raw[:2] == b"\x1f\x8b":
        raw = _gunzip(path, raw)
    if len(raw) < 4:
        raise MixganError(f"{shown(path)}: truncated IDX header")
    zero, code, dims = struct.unpack(">HBB", raw[:4])
    if zero != 0 or code not in _DTYPES:
        raise MixganError(f"{shown(path)}: wrong IDX magic number 0x{raw[:4].hex()}")
    if dims != ndim:
        raise MixganError(f"{shown(path)}: expected a {ndim}-dimensional IDX file, found {dims} dimensions")
    header = 4 + 4 * dims
    if len(raw) < header:
        raise MixganError(f"{shown(path)}: truncated IDX header")
    shape = struct.unpack(f">{dims}I", raw[4:header])
    dtype = np.dtype(_DTYPES[code])
    count = math.prod(shape)  # Python ints: a forged header cannot overflow the size check
    expected = count * dtype.itemsize
    if len(raw) - header < expected:
        raise MixganError(f"{shown(path)}: truncated: {len(raw) - header} data bytes, shape {shape} needs {expected}")
    if len(raw) - header > expected:
        raise MixganError(f"{shown(path)}: {len(raw) - header - expected} unexpected bytes after the data")
    return np.frombuffer(raw, dtype=dtype, count=count, offset=header).reshape(shape)


def _find(folder: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (folder / name).is_file():
            return folder / name
    raise MixganError(f"{shown(folder)}: missing {stem}[.gz]")


def load_idx_dataset(name: str, folder: str | Path) -> Dataset:
    """train-/t10k- images and labels from ``folder``, as uint8 1 x 28 x 28 images."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MixganError(f"{name}: data folder {shown(folder)} does not exist (set --data-dir)")
    parts, files = {}, []
    for split, prefix in (("train", "train"), ("test", "t10k")):
        ip, lp = _find(folder, f"{prefix}-images-idx3-ubyte"), _find(folder, f"{prefix}-labels-idx1-ubyte")
        images, labels = read_idx(ip, 3), read_idx(lp, 1)
        for path, array in ((ip, images), (lp, labels)):
            if array.dtype != np.uint8:
                raise MixganError(f"{shown(path)}: expected unsigned bytes (IDX type 0x08), found {array.dtype}")
        if len(images) != len(labels):
            raise MixganError(f"{shown(ip)}: {len(images)} images but {shown(lp.name)} has {len(labels)} labels")
        if len(images) == 0:
            raise MixganError(f"{shown(ip)}: no images")
        if labels.max(initial=0) > 9:
            raise MixganError(f"{shown(lp)}: label {int(labels.max())} outside 0..9")
        x = torch.from_numpy(images.copy()).unsqueeze(1)
        parts[split] = (x, torch.from_numpy(labels.astype(np.int64)))
        files += [ip, lp]
    shapes = {tuple(parts[s][0].shape[1:]) for s in parts}
    if len(shapes) != 1:
        raise MixganError(f"{shown(folder)}: train and test images differ in size {sorted(shapes)}")
    return Dataset(name, parts["train"][0], parts["test"][0], parts["train"][1], parts["test"][1],
                   num_classes=10, files=files)
