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


# ---- the data boundary through the CLI -------------------------------------------------------
#
# Every reader of user files gets seeded random bytes, truncations and header edits of a valid
# file, run through the command a user would type, all in one interpreter (one import of torch).
# Each run must end in exit 0 (an unreadable image skipped and counted) or exit 2 with one stderr
# line `mixgan: error: ...`; never a traceback; peak memory bounded; and a failed command leaves
# nothing in its output folder.

CLI_CASES = 6  # per reader and kind of damage: a fixed, seeded sample (MIXGAN_FUZZ_EXAMPLES searches deeper)


def damage(raw: bytes, rng, header: int = 64) -> list[bytes]:
    """Random bytes, a truncation, and byte edits inside the first ``header`` bytes of ``raw``."""
    out = [rng.randbytes(rng.randint(0, 600)), raw[:rng.randint(0, len(raw) - 1)]]
    edited = bytearray(raw)
    for _ in range(rng.randint(1, 4)):
        edited[rng.randrange(min(header, len(edited)))] = rng.randrange(256)
    return out + [bytes(edited)]


def _npy(array) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def _images(kind: str) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.arange(12 * 12 * 3, dtype=np.uint8).reshape(12, 12, 3)).save(buf, format=kind)
    return buf.getvalue()


def cli_cases(tmp: Path, rng) -> list[tuple[str, list[str], Path]]:
    """(what, argv, output folder) for every reader, with the damaged files written under ``tmp``."""
    cases = []

    def case(what: str) -> Path:
        d = tmp / f"{len(cases):03d}-{what}"
        d.mkdir()
        return d

    for kind, suffix in (("PNG", ".png"), ("JPEG", ".jpg"), ("WEBP", ".webp")):
        valid = _images(kind)
        for _ in range(CLI_CASES // 3 + 1):
            for raw in damage(valid, rng):
                d = case(kind.lower())
                (d / "imgs").mkdir()
                for i in range(3):
                    (d / "imgs" / f"ok{i}{suffix}").write_bytes(valid)
                (d / "imgs" / f"bad{suffix}").write_bytes(raw)
                cases.append((f"{kind} in a folder", ["data", "pack", str(d / "imgs"), str(d / "out")], d / "out"))
    images = idx_bytes(np.arange(4 * 28 * 28, dtype=np.uint8).reshape(4, 28, 28))
    labels = idx_bytes(np.array([1, 2, 3, 4], dtype=np.uint8))
    for _ in range(CLI_CASES // 3 + 1):
        for which, valid in (("images", images), ("labels", labels)):
            for raw in damage(valid, rng, header=16):
                d = case("idx")
                for prefix in ("train", "t10k"):
                    (d / f"{prefix}-images-idx3-ubyte").write_bytes(raw if which == "images" else images)
                    (d / f"{prefix}-labels-idx1-ubyte").write_bytes(raw if which == "labels" else labels)
                cases.append(("IDX", ["data", "pack", "mnist", "--data-dir", str(d), str(d / "out")], d / "out"))
    cifar = pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}, protocol=4)
    for _ in range(CLI_CASES // 3 + 1):
        for raw in damage(cifar, rng):
            d = case("cifar")
            for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
                (d / name).write_bytes(raw if name == "data_batch_3" else cifar)
            cases.append(("CIFAR pickle", ["data", "pack", "cifar10", "--data-dir", str(d), str(d / "out")], d / "out"))
    npz = npz_bytes(np.savez, x=np.zeros((6, 1, 8, 8), np.uint8), y=np.arange(6) % 2)
    npz_zipped = npz_bytes(np.savez_compressed, x=np.zeros((6, 1, 8, 8), np.uint8), y=np.arange(6) % 2)
    import zipfile

    def rezipped(member: bytes, method) -> bytes:  # a sound zip around a damaged .npy
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", method) as z:
            z.writestr("x.npy", member)
            z.writestr("y.npy", _npy(np.arange(6) % 2))
        return buf.getvalue()

    npy = _npy(np.zeros((6, 1, 8, 8), np.uint8))
    for _ in range(CLI_CASES // 3 + 1):
        damaged = damage(npz, rng, header=120) + damage(npz_zipped, rng, header=120) + [
            rezipped(raw, method) for raw in damage(npy, rng, header=128)
            for method in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)]
        for raw in damaged:
            d = case("npz")
            (d / "f.npz").write_bytes(raw)
            cases.append(("npz", ["data", "pack", f"npz:{d / 'f.npz'}", str(d / "out")], d / "out"))
            cases.append(("npz samples", ["evaluate", "--samples", str(d / "f.npz"), "--dataset", "ring",
                                          "--metrics", "modes", "--device", "cpu", "--quiet"], d / "none"))
    from test_data_boundary import npz_bomb

    d = case("npz-bomb")
    npz_bomb(d / "bomb.npz")
    cases.append(("npz bomb", ["data", "pack", f"npz:{d / 'bomb.npz'}", str(d / "out")], d / "out"))
    shards = tmp / "valid-shards"
    src = tmp / "valid.npz"
    src.write_bytes(npz)
    from mixgan.data.pack import pack

    pack(f"npz:{src}", shards, shard_size=2, test_fraction=0.2)
    manifest = (shards / "manifest.json").read_bytes()
    edits = [lambda m: m["splits"]["train"]["shards"][0].update(file=rng.choice(["../valid.npz", "/etc/passwd", "..",
                                                                                 "a/b.npy", 7, ""])),
             lambda m: m["splits"]["train"]["shards"][0].update(count=rng.choice([-1, 10 ** 12, "3", 2.5, None])),
             lambda m: m.update(shape=rng.choice([[1, 8], [1, 10 ** 6, 10 ** 6], [2, 8, 8], "x", [1, -8, 8]])),
             lambda m: m.update(classes=[str(i) for i in range(rng.choice([3, 50, 10 ** 4]))]),
             lambda m: m["splits"]["train"].update(count=rng.randint(-3, 30))]
    import shutil

    for _ in range(CLI_CASES):
        d = case("shards")
        shutil.copytree(shards, d / "s")
        target = rng.choice(["manifest", "shard", "labels", "edit"])
        if target == "manifest":
            raw = rng.choice(damage(manifest, rng, header=len(manifest)))
            (d / "s" / "manifest.json").write_bytes(raw)
        elif target == "edit":
            m = json.loads(manifest)
            rng.choice(edits)(m)
            (d / "s" / "manifest.json").write_text(json.dumps(m))
        else:
            name = "train-00001.npy" if target == "shard" else "train-labels.npy"
            (d / "s" / name).write_bytes(rng.choice(damage((shards / name).read_bytes(), rng, header=128)))
        cases.append(("shard folder", ["data", "verify", str(d / "s")], d / "none"))
        cases.append(("shard folder", ["data", "pack", f"shards:{d / 's'}", str(d / "out")], d / "out"))
    for _ in range(CLI_CASES):
        for raw in damage(VALID_TOML, rng, header=len(VALID_TOML)):
            d = case("toml")
            (d / "c.toml").write_bytes(raw)
            cases.append(("TOML config", ["train", "--config", str(d / "c.toml"), "--out", str(d / "run"),
                                          "--dry-run"], d / "run"))
            cases.append(("TOML recipe", ["train", "--recipe", str(d / "c.toml"), "--out", str(d / "run"),
                                          "--dry-run"], d / "run"))
    return cases


def run_cli_cases(tmp: str, seed: int, report: str) -> None:
    """The subprocess side: every case through ``mixgan.cli.main``, one JSON line per case."""
    import contextlib
    import random
    import resource
    import traceback

    from mixgan.cli import main

    rng = random.Random(seed)
    cases = cli_cases(Path(tmp), rng)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with open(report, "w") as out:
        for what, argv, folder in cases:
            err, crash = io.StringIO(), ""
            try:
                with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                    code = main(argv)
            except BaseException:  # what main let through: the failure we hunt
                code, crash = -1, traceback.format_exc()
            grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
            left = sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []
            out.write(json.dumps({"what": what, "argv": argv, "code": code, "err": err.getvalue(), "crash": crash,
                                  "grown_mb": grown, "left": left if code != 0 else [],
                                  "out_exists": folder.exists()}) + "\n")


def test_every_reader_refuses_damaged_files_in_one_line_through_the_cli(tmp_path):
    import subprocess
    import sys

    report = tmp_path / "report.jsonl"
    here = Path(__file__).resolve().parent
    env = dict(os.environ, PYTHONPATH=f"{here.parent}{os.pathsep}{here}", OMP_NUM_THREADS="1")
    code = f"import test_fuzz; test_fuzz.run_cli_cases({str(tmp_path / 'w')!r}, 0, {str(report)!r})"
    (tmp_path / "w").mkdir()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads(line) for line in report.read_text().splitlines()]
    readers = {r["what"] for r in results}
    assert {"PNG in a folder", "JPEG in a folder", "WEBP in a folder", "IDX", "CIFAR pickle", "npz", "npz samples",
            "npz bomb", "shard folder", "TOML config", "TOML recipe"} <= readers
    refused = 0
    for r in results:
        label = f"{r['what']} {r['argv']}: {r['err'] or r['crash']}"
        assert not r["crash"] and "Traceback" not in r["err"], label
        assert r["code"] in (0, 2), label
        lines = [line for line in r["err"].splitlines() if line.strip()]
        if r["code"] == 2:
            refused += 1
            errors = [line for line in lines if line.startswith("mixgan: error: ")]
            assert len(errors) == 1 and lines[-1] == errors[0], label
            assert all(line.startswith(("mixgan: error: ", "mixgan: warning: ")) for line in lines), label
            assert not r["out_exists"] or r["left"] == [], label  # nothing left behind
        else:
            assert all(line.startswith("mixgan: warning: ") for line in lines), label
        assert r["grown_mb"] < 400, label
    assert refused > len(results) // 3  # the damage reaches the checks


@pytest.fixture(scope="module")
def shard_folder(tmp_path_factory):
    from mixgan.data.pack import pack

    base = tmp_path_factory.mktemp("fuzz-shards")
    np.savez(base / "d.npz", x=np.arange(6 * 64, dtype=np.uint8).reshape(6, 1, 8, 8), y=np.arange(6) % 3)
    pack(f"npz:{base / 'd.npz'}", base / "s", shard_size=2, test_fraction=0.2)
    return base / "s"


@st.composite
def manifest_edits(draw, valid: dict):
    """The valid manifest with one field, at any depth a pack writes, replaced by random JSON."""
    import copy

    m = copy.deepcopy(valid)
    paths = [("shape",), ("classes",), ("version",), ("splits", "train", "count"), ("splits", "test")]
    paths += [("splits", "train", "shards", 0, k) for k in ("file", "count", "bytes", "sha256")]
    paths += [("splits", "train", "labels", k) for k in ("file", "bytes")]
    path = draw(st.sampled_from(paths))
    node = m
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = draw(st.one_of(json_values, st.sampled_from(
        ["../d.npz", "/etc/passwd", "..", "train-00001.npy", "test-labels.npy", -1, 10 ** 12, [1, 8, 8]])))
    return m


@FUZZ
@given(data=st.data())
def test_shard_readers(tmp_path, shard_folder, data):
    import shutil

    from mixgan.data.shards import shard_dataset, verify

    folder = tmp_path / "s"
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(shard_folder, folder)
    valid = json.loads((shard_folder / "manifest.json").read_text())
    choice = data.draw(st.sampled_from(["manifest", "shard", "labels"]))
    if choice == "manifest":
        (folder / "manifest.json").write_text(json.dumps(data.draw(manifest_edits(valid))))
    else:
        name = "train-00001.npy" if choice == "shard" else "train-labels.npy"
        (folder / name).write_bytes(data.draw(file_bytes((shard_folder / name).read_bytes())))
    settle(lambda: verify(folder))
    d = settle(lambda: shard_dataset(folder, verify_hashes=data.draw(st.booleans())))
    if d is not None:  # what opened is consistent: every image readable, every label a class
        x = d.x_train[torch.arange(len(d.x_train))]
        assert x.dtype == torch.uint8 and x.shape[1:] == (1, 8, 8)
        assert d.y_train is None or (0 <= int(d.y_train.min()) and int(d.y_train.max()) < d.num_classes)
