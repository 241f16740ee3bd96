"""Random and mutated bytes into every file reader: a MixganError or a valid result, never a crash.

Each reader gets pure random bytes and mutations (flipped, cut, spliced bytes) of a valid
file, so the fuzzing reaches past the first header check.
"""
import gzip
import hashlib
import io
import json
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mixgan
from mixgan.config import build_config, read_toml
from mixgan.data.idx import load_idx_dataset, read_idx
from mixgan.data.images import _cifar_batch, image_folder
from mixgan.data.npz import npz_dataset
from mixgan.errors import MixganError, MixganWarning
from mixgan.training.checkpoint import read_checkpoint, seal

from conftest import idx_bytes

# CI runs a fixed, derandomised sample; MIXGAN_FUZZ_EXAMPLES=5000 searches deeper.
FUZZ = settings(max_examples=int(os.environ.get("MIXGAN_FUZZ_EXAMPLES", 120)), deadline=None,
                derandomize="MIXGAN_FUZZ_EXAMPLES" not in os.environ,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@st.composite
def mutated(draw, valid: bytes):
    """``valid`` with a few bytes overwritten, a slice cut out or random bytes spliced in."""
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "truncate"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[pos] = draw(st.integers(0, 255))
        elif kind == "cut":
            del data[pos:pos + draw(st.integers(1, 64))]
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        else:
            del data[pos:]
    return bytes(data)


def file_bytes(valid: bytes):
    return st.one_of(st.binary(max_size=512), mutated(valid))


def settle(call):
    """Run a reader: MixganError is the clear refusal; anything else raised is the bug we hunt."""
    try:
        return call()
    except MixganError as exc:
        assert str(exc) and "\n" not in str(exc)
        return None


VALID_IMAGES = idx_bytes(np.arange(3 * 28 * 28, dtype=np.uint8).reshape(3, 28, 28))
VALID_LABELS = idx_bytes(np.array([1, 2, 3], dtype=np.uint8))


@FUZZ
@given(raw=st.one_of(file_bytes(VALID_IMAGES), file_bytes(VALID_LABELS)), zipped=st.booleans(),
       ndim=st.integers(1, 3))
def test_read_idx(tmp_path, raw, zipped, ndim):
    path = tmp_path / "f-idx"
    path.write_bytes(gzip.compress(raw) if zipped else raw)
    out = settle(lambda: read_idx(path, ndim))
    if out is not None:
        assert out.ndim == ndim


@FUZZ
@given(images=file_bytes(VALID_IMAGES), labels=file_bytes(VALID_LABELS))
def test_idx_dataset(tmp_path, images, labels):
    for prefix in ("train", "t10k"):
        (tmp_path / f"{prefix}-images-idx3-ubyte").write_bytes(images)
        (tmp_path / f"{prefix}-labels-idx1-ubyte").write_bytes(labels)
    data = settle(lambda: load_idx_dataset("mnist", tmp_path))
    if data is not None:
        assert data.x_train.dtype == torch.uint8 and data.x_train.ndim == 4
        assert len(data.x_train) == len(data.y_train) > 0
        assert 0 <= data.y_train.min() and data.y_train.max() < 10


VALID_CIFAR = pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}, protocol=2)


@FUZZ
@given(raw=st.one_of(file_bytes(VALID_CIFAR),
                     st.builds(lambda d, l: pickle.dumps({b"data": d, b"labels": l}),
                               st.sampled_from([np.zeros((2, 3072), np.uint8), np.zeros(3072), "text", 7]),
                               st.one_of(st.lists(st.integers(-5, 300), max_size=3), st.text(max_size=3),
                                         st.dictionaries(st.integers(), st.integers(), max_size=2)))))
def test_cifar_batch(tmp_path, raw):
    path = tmp_path / "data_batch_1"
    path.write_bytes(raw)
    out = settle(lambda: _cifar_batch(path))
    if out is not None:
        x, y = out
        assert x.shape[1:] == (3, 32, 32) and len(x) == len(y) and y.dtype == np.int64
        assert ((0 <= y) & (y < 10)).all()


def png_bytes(mode: str, size: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.arange(size * size * (3 if mode == "RGB" else 1), dtype=np.uint8)
                    .reshape((size, size, 3) if mode == "RGB" else (size, size))).save(buf, format="PNG")
    return buf.getvalue()


VALID_PNG, VALID_RGB = png_bytes("L", 8), png_bytes("RGB", 8)


@FUZZ
@given(raw=st.one_of(file_bytes(VALID_PNG), file_bytes(VALID_RGB)), suffix=st.sampled_from([".png", ".jpg"]))
def test_image_folder(tmp_path, raw, suffix):
    folder = tmp_path / "imgs"
    folder.mkdir(exist_ok=True)
    for old in folder.iterdir():
        old.unlink()
    (folder / "a.png").write_bytes(VALID_PNG)
    (folder / "b.png").write_bytes(VALID_PNG)
    (folder / f"c{suffix}").write_bytes(raw)
    data = settle(lambda: image_folder(folder))
    if data is not None:  # an unreadable file is skipped and counted, never a traceback
        assert data.x_train.dtype == torch.uint8 and len(data.x_train) + len(data.x_test) + data.skipped == 3


def npz_bytes(save, **arrays) -> bytes:
    buf = io.BytesIO()
    save(buf, **arrays)
    return buf.getvalue()


NPZ_ARRAYS = {"x": np.zeros((4, 2), np.float32), "y": np.array([0, 1, 0, 1])}
VALID_NPZ, VALID_NPZ_ZIPPED = npz_bytes(np.savez, **NPZ_ARRAYS), npz_bytes(np.savez_compressed, **NPZ_ARRAYS)


@FUZZ
@given(raw=st.one_of(file_bytes(VALID_NPZ), mutated(VALID_NPZ_ZIPPED)))
def test_npz_readers(tmp_path, raw):
    from mixgan.cli.evaluate import load_npz

    path = tmp_path / "f.npz"
    path.write_bytes(raw)
    data = settle(lambda: npz_dataset(str(path)))
    if data is not None:
        assert torch.isfinite(data.x_train).all() and len(data.x_train) > 0
    out = settle(lambda: load_npz(str(path)))
    if out is not None:
        assert isinstance(out[0], np.ndarray)


VALID_TOML = b'out = "run"\n[train]\nsteps = 3\nlr_g = 1e-3\nema = true\n[prior]\ncomponents = 4\nc = 0.5\n'
toml_values = st.one_of(st.integers(-10, 10), st.floats(allow_nan=True), st.booleans(), st.text(max_size=5),
                        st.lists(st.integers(), max_size=2))


@FUZZ
@given(raw=st.one_of(file_bytes(VALID_TOML), st.dictionaries(
    st.sampled_from(["train", "prior", "model", "data", "out", "steps", "sigma", "x"]),
    st.one_of(toml_values, st.dictionaries(st.sampled_from(["steps", "c", "components", "name", "dynamic", "q"]),
                                           toml_values, max_size=3)), max_size=4)))
def test_config_file(tmp_path, raw):
    import tomli_w

    path = tmp_path / "c.toml"
    path.write_bytes(raw if isinstance(raw, bytes) else tomli_w.dumps(raw).encode())
    settle(lambda: read_toml(path))
    cfg = settle(lambda: build_config(config_file=path))
    if cfg is not None:
        assert cfg.prior.components >= 1 and cfg.prior.c > 0


# ---- checkpoints ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from conftest import small_config

    base = tmp_path_factory.mktemp("fuzz-run")
    run = mixgan.train(small_config(base, **{"train.steps": 2, "train.checkpoint_every": 2}))
    record = run.path / "checkpoints" / "step-000002.json"
    return run.path, record.read_bytes(), record.with_suffix(".safetensors").read_bytes()


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                     max_size=3), max_leaves=8)


def install(tmp_path: Path, run: Path, record: bytes, tensors: bytes, rehash: bool) -> Path:
    """A copy of the run whose newest checkpoint has these bytes (its checksum, size and the
    record's own checksum fixed when asked, so the readers behind those checks are reached)."""
    import shutil

    dst = tmp_path / "run"
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(run, dst)
    folder = dst / "checkpoints"
    for p in folder.iterdir():
        p.unlink()
    if rehash:
        try:
            meta = json.loads(record)
            if isinstance(meta, dict):
                meta["sha256"] = hashlib.sha256(tensors).hexdigest()
                meta["bytes"] = len(tensors)
                record = json.dumps(seal(meta)).encode()
        except (ValueError, RecursionError):
            pass
    (folder / "step-000002.json").write_bytes(record)
    (folder / "step-000002.safetensors").write_bytes(tensors)
    return folder / "step-000002.json"


@st.composite
def record_edits(draw, valid: bytes):
    """The valid JSON record with one field (or one nested state entry) replaced by random JSON."""
    meta = json.loads(valid)
    key = draw(st.sampled_from(sorted(meta) + ["states.G", "data_spec.shape", "states.opt_g"]))
    value = draw(json_values)
    if "." in key:
        head, tail = key.split(".")
        meta[head][tail] = value
    else:
        meta[key] = value
    return json.dumps(meta).encode()


@FUZZ
@given(data=st.data())
def test_checkpoint_readers(tmp_path, trained, data):
    run, record, tensors = trained
    choice = data.draw(st.sampled_from(["record-bytes", "record-json", "tensors"]))
    if choice == "record-bytes":
        record = data.draw(file_bytes(record))
    elif choice == "record-json":
        record = data.draw(record_edits(record))
    else:
        tensors = data.draw(file_bytes(tensors))
    path = install(tmp_path, run, record, tensors, rehash=data.draw(st.booleans()))
    settle(lambda: read_checkpoint(path))
    loaded = settle(lambda: mixgan.load(path.parent.parent))
    if loaded is not None:
        assert loaded.sample(3).x.shape == (3, 2)


def test_idx_dataset_refuses_non_byte_images(tmp_path):
    floats = np.zeros((3, 28, 28), ">f4")
    raw = idx_bytes(floats, code=0x0D)
    for prefix in ("train", "t10k"):
        (tmp_path / f"{prefix}-images-idx3-ubyte").write_bytes(raw)
        (tmp_path / f"{prefix}-labels-idx1-ubyte").write_bytes(VALID_LABELS)
    with pytest.raises(MixganError, match="expected unsigned bytes"):
        load_idx_dataset("mnist", tmp_path)


@pytest.mark.parametrize("side", [12_000, 200_000])  # over PIL's warning and its error limit
def test_image_whose_header_claims_a_huge_size_is_skipped_not_decoded(tmp_path, side):
    import zlib

    raw = bytearray(VALID_PNG)
    raw[16:24] = struct.pack(">II", side, side)  # IHDR width and height, then its CRC
    raw[29:33] = struct.pack(">I", zlib.crc32(bytes(raw[12:29])))
    (tmp_path / "a.png").write_bytes(bytes(raw))
    (tmp_path / "b.png").write_bytes(VALID_PNG)
    (tmp_path / "c.png").write_bytes(VALID_PNG)
    with pytest.warns(MixganWarning, match=r"skipped 1 unreadable image file\(s\) \(a.png\)"):
        data = image_folder(tmp_path)
    assert data.skipped == 1 and len(data.x_train) + len(data.x_test) == 2


def test_idx_header_whose_size_overflows_64_bits_is_refused(tmp_path):
    path = tmp_path / "x-idx"
    path.write_bytes(struct.pack(">HBB", 0, 0x08, 3) + struct.pack(">3I", 2 ** 31, 2 ** 31, 4))  # 2^64 items
    with pytest.raises(MixganError, match="truncated: 0 data bytes"):
        read_idx(path, 3)
