"""The data boundary: a user's folder, npz and shards are read as safely as a run directory.

Each test reproduces one way a hostile or odd file got through (docs/reliability.md, "The data
boundary"): memory a header inflates, reads outside the folder, layouts that silently drop images,
stale fingerprints, packs that collide or leave debris, images read unlike a viewer shows them.
"""
import hashlib
import json
import os
import signal
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from mixgan.data import load_dataset
from mixgan.data.folder import fit_image, image_folder, list_images
from mixgan.data.pack import pack
from mixgan.data.shards import ShardWriter, read_manifest, shard_dataset, verify
from mixgan.errors import MixganError, MixganWarning

ROOT = Path(__file__).resolve().parents[1]


def png(path, size=(8, 8), value=128, mode="L", **save):
    from PIL import Image

    Image.new(mode, size, value).save(path, **save)


def grey_folder(folder: Path, n: int = 4) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        png(folder / f"{i:03d}.png", value=i * 30)
    return folder


def one_error_line(code: int, err: str) -> str:
    """The CLI refused in one line: exit 2, one stderr line, no traceback."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("mixgan: error: "), err
    assert "Traceback" not in err
    return lines[0]


def peak_rss_growth_mb(code: str) -> float:
    """Growth of a fresh interpreter's peak resident memory over running ``code`` (MB)."""
    script = ("import resource, sys\nimport mixgan.data, PIL.Image, PIL.PngImagePlugin\n"
              "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n" + code +
              "\nprint((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    return float(out.stdout.split()[-1])


def npy_head(descr: str, shape: tuple) -> bytes:
    """A .npy version 1.0 header (magic, length, the padded dict) declaring ``shape`` of ``descr``."""
    text = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode()
    text += b" " * (63 - (10 + len(text)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text


def npz_bomb(path: Path, side: int = 32, count: int = 3_906_250) -> Path:
    """An .npz whose deflated member is a valid stream of ``count`` zero images (4 GB by default)
    in about 4 MB: one compressed megabyte of zeros repeated (each ends in a full flush, so the
    copies are independent blocks). Its CRC is left 0: a reader that decompresses it all first
    allocates the whole array, then fails."""
    head = npy_head("|u1", (count, 1, side, side))
    data_bytes = count * side * side
    block_size = 1_000_000
    assert data_bytes % block_size == 0
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = c.compress(head) + c.flush(zlib.Z_FULL_FLUSH)
    block = c.compress(bytes(block_size)) + c.flush(zlib.Z_FULL_FLUSH)
    stream = first + block * (data_bytes // block_size) + b"\x03\x00"  # a final empty block ends it
    name, usize = b"x.npy", len(head) + data_bytes
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0x21, 0, len(stream), usize, len(name), 0) + name
    central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0x21, 0, len(stream), usize,
                          len(name), 0, 0, 0, 0, 0, 0) + name
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central), len(local) + len(stream), 0)
    path.write_bytes(local + stream + central + end)
    return path


# ---- images: memory, bit depth, orientation, transparency -------------------------------------

def test_a_long_thin_image_costs_the_memory_of_its_pixels_not_of_its_stretched_copy(tmp_path):
    """A 200000 x 1 PNG (a few hundred bytes) resized on its short side first was 12.8M x 64 px in
    memory (4 GB in RGB) before the crop: the bomb guard never saw it. Cropped first, it is cheap
    for the folder reader (train, data pack) and the photo reader (sample --instances)."""
    from PIL import Image

    folder = grey_folder(tmp_path / "imgs", 2)
    Image.new("L", (200_000, 1), 7).save(folder / "thin.png")
    assert (folder / "thin.png").stat().st_size < 2000
    grown = peak_rss_growth_mb(
        f"from mixgan.data.folder import image_folder\nfrom mixgan.data.photos import read_images\n"
        f"d = image_folder({str(folder)!r}, resolution=64, channels=1)\n"
        f"assert d.skipped == 0 and len(d.x_train) + len(d.x_test) == 3\n"
        f"x = read_images([{str(folder / 'thin.png')!r}], (1, 64, 64))\n"
        f"assert x.shape == (1, 1, 64, 64) and int(x.float().mean().round()) == 7")
    assert grown < 200, f"peak memory grew {grown:.0f} MB"


def test_sixteen_bit_grey_is_scaled_by_its_bit_depth_not_by_its_values(tmp_path):
    """A 16-bit PNG whose values are all <= 255 is a nearly black image: it must not load as 8-bit."""
    from PIL import Image

    for i, v in enumerate((200, 255, 65535, 32896)):
        Image.fromarray(np.full((8, 8), v, np.uint16)).save(tmp_path / f"{i}.png")
    d = image_folder(tmp_path, test_fraction=0.25)
    got = sorted(int(v) for v in torch.cat([d.x_train, d.x_test])[:, 0, 4, 4])
    assert got == [1, 1, 128, 255]  # round(v * 255 / 65535)


def test_exif_orientation_is_applied_as_a_viewer_shows_the_photo(tmp_path):
    """A photo stored sideways with orientation 6 (turn 90 degrees clockwise to view) loads upright."""
    from PIL import Image

    a = np.zeros((8, 8), np.uint8)
    a[:2] = 255  # a white band at the top of the stored pixels
    exif = Image.Exif()
    exif[0x0112] = 6
    for name in ("a.png", "b.png"):
        Image.fromarray(a).save(tmp_path / name, exif=exif)
    Image.fromarray(a).save(tmp_path / "c.jpg", exif=exif, quality=100)
    upright = np.asarray(Image.fromarray(a).transpose(Image.Transpose.ROTATE_270))  # the band on the right
    d = image_folder(tmp_path, test_fraction=0.34)
    for x in torch.cat([d.x_train, d.x_test]):
        assert np.abs(x[0].numpy().astype(int) - upright).max() <= 16
    assert (upright[:, -2:] == 255).all() and (upright[:, :6] == 0).all()

    from mixgan.data.photos import read_images

    assert np.array_equal(read_images([tmp_path / "a.png"], (1, 8, 8))[0, 0].numpy(), upright)


def test_exif_turned_sizes_decide_the_automatic_resolution(tmp_path):
    """Sizes are those of the upright photo: stored 16 x 12 with orientation 6 is 12 x 16."""
    from PIL import Image

    from mixgan.data.folder import probe_images

    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("L", (16, 12)).save(tmp_path / "a.png", exif=exif)
    assert probe_images([tmp_path / "a.png"])[0] == [(12, 16)]


@pytest.mark.parametrize("background, expected", [("white", 255), ("black", 0), ("#808080", 128)])
def test_transparent_pixels_are_laid_on_the_configured_background(tmp_path, background, expected):
    png(tmp_path / "a.png", mode="RGBA", value=(10, 20, 30, 0))
    png(tmp_path / "b.png", mode="LA", value=(10, 0))
    d = load_dataset("folder", str(tmp_path), test_fraction=0.5, background=background)
    x = torch.cat([d.x_train, d.x_test])
    assert (x == expected).all()
    white = load_dataset("folder", str(tmp_path), test_fraction=0.5)
    assert (d.fingerprint() == white.fingerprint()) == (background == "white")  # caches tell them apart


def test_background_setting_is_validated_and_reaches_the_loaded_data(tmp_path):
    import mixgan
    from mixgan.config import build_config

    with pytest.raises(MixganError, match="data.background must be"):
        build_config({"data.background": "not-a-colour"})
    cfg = build_config({"data.dataset": "folder", "data.data_dir": str(tmp_path), "data.background": "black"})
    assert cfg.data.background == "black"
    png(tmp_path / "a.png", mode="RGBA", value=(10, 20, 30, 0))
    png(tmp_path / "b.png", mode="RGBA", value=(10, 20, 30, 0))
    run = mixgan.api.Run.__new__(mixgan.api.Run)
    run.cfg = cfg
    assert (run.data.x_train == 0).all()


# ---- npz: sizes from the header --------------------------------------------------------------

def test_npz_bomb_is_refused_from_its_header_by_train_and_evaluate(tmp_path, cli):
    """4 GB of zeros declared in 4 MB: refused in one line before anything is allocated."""
    bomb = npz_bomb(tmp_path / "bomb.npz")
    assert bomb.stat().st_size < 5_000_000
    line = one_error_line(*cli("train", "--dataset", f"npz:{bomb}", "--model", "gan", "--steps", 1,
                               "--device", "cpu", "--out", tmp_path / "run", "--quiet")[::2])
    assert "decompression bomb" in line and not (tmp_path / "run").exists()
    line = one_error_line(*cli("evaluate", "--samples", bomb, "--dataset", "ring", "--device", "cpu")[::2])
    assert "decompression bomb" in line


def test_npz_reading_stays_within_memory_of_the_file(tmp_path):
    """The same bomb through the library in a fresh process: peak memory does not follow the header."""
    bomb = npz_bomb(tmp_path / "bomb.npz")
    grown = peak_rss_growth_mb(
        f"from mixgan.data.npz import read_npz\nfrom mixgan.errors import MixganError\n"
        f"try:\n    read_npz({str(bomb)!r}, 'x')\nexcept MixganError:\n    pass\nelse:\n    raise SystemExit(1)")
    assert grown < 100, f"peak memory grew {grown:.0f} MB"


def test_npz_header_declaring_more_than_its_member_holds_is_refused(tmp_path):
    import zipfile

    from mixgan.data.npz import read_npz

    path = tmp_path / "f.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("x.npy", npy_head("<f4", (1_000_000_000, 2)) + bytes(32))
    with pytest.raises(MixganError, match=r"declares shape \(1000000000, 2\) of float32 \(8.00 GB\) but holds"):
        read_npz(path, "npz dataset")


def test_npz_larger_than_the_memory_it_may_take_is_refused(tmp_path, monkeypatch):
    from mixgan.data import npz

    path = tmp_path / "f.npz"
    np.savez(path, x=np.zeros((1000, 100), np.float32))
    monkeypatch.setattr(npz, "available_memory", lambda: 500_000)
    with pytest.raises(MixganError, match=r"need 0.4 MB of memory, more than the 0.2 MB available.*data pack"):
        npz.npz_dataset(str(path))


# ---- folders: layout and fingerprint ---------------------------------------------------------

def test_images_beside_class_folders_are_refused_not_left_out(tmp_path):
    grey_folder(tmp_path, 3)
    grey_folder(tmp_path / "rejected", 2)
    with pytest.raises(MixganError, match=r"holds 3 image\(s\) beside the sub-folder\(s\) rejected"):
        image_folder(tmp_path)


@pytest.mark.parametrize("layout", ["empty", "deeper"])
def test_a_class_folder_without_images_of_its_own_is_refused(tmp_path, layout):
    grey_folder(tmp_path / "cat", 2)
    (tmp_path / "dog").mkdir()
    if layout == "deeper":
        grey_folder(tmp_path / "dog" / "2024", 2)
    with pytest.raises(MixganError, match=r"class folder\(s\) dog of .* hold no image directly"):
        list_images(tmp_path)


def test_images_below_a_class_folder_are_named_in_one_warning(tmp_path):
    grey_folder(tmp_path / "cat", 2)
    grey_folder(tmp_path / "dog", 2)
    grey_folder(tmp_path / "dog" / "extra", 2)
    with pytest.warns(MixganWarning, match=r"left out the images in 1 folder\(s\) below the class folders \(dog/extra\)"):
        listing = list_images(tmp_path)
    assert len(listing.paths) == 4


def test_the_fingerprint_covers_every_file_of_a_folder(tmp_path):
    """Caches (reference classifier, instance tables) are keyed by it: a folder that grows, or a
    file edited in place, must change it, however many files come before."""
    grey_folder(tmp_path, 300)
    before = image_folder(tmp_path).fingerprint()
    png(tmp_path / "999.png", value=1)
    grown = image_folder(tmp_path).fingerprint()
    assert grown != before
    os.utime(tmp_path / "999.png", ns=(1, 1))  # same size, new time: edited
    assert image_folder(tmp_path).fingerprint() != grown


def test_a_folders_split_is_the_same_for_every_seed_and_the_fingerprint_follows_it(tmp_path):
    """Row-indexed caches (a GM-GAN encoder's neighbour pairs, instance tables) are keyed by the
    fingerprint: a table made under one training seed must index the same train rows under the next,
    and another test fraction, which moves images between the splits, must not reuse it."""
    for i in range(40):
        png(tmp_path / f"{i:03d}.png", value=3 * i)
    a, b = image_folder(tmp_path, seed=0), image_folder(tmp_path, seed=1)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.x_test, b.x_test)
    assert a.fingerprint() == b.fingerprint()
    other = image_folder(tmp_path, seed=0, test_fraction=0.5)
    assert len(other.x_test) == 20 and other.fingerprint() != a.fingerprint()


def test_the_fingerprint_covers_every_shard(tmp_path):
    src = tmp_path / "d.npz"
    np.savez(src, x=np.zeros((20, 1, 8, 8), np.uint8))
    pack(f"npz:{src}", tmp_path / "s", shard_size=5)
    before = shard_dataset(tmp_path / "s").fingerprint()
    os.utime(tmp_path / "s" / "train-00002.npy", ns=(1, 1))
    assert shard_dataset(tmp_path / "s", verify_hashes=False).fingerprint() != before


def test_file_names_are_quoted_where_they_could_forge_a_line(tmp_path, cli):
    folder = grey_folder(tmp_path / "imgs", 4)
    (folder / "bad\nmixgan: error: forged.png").write_bytes(b"not an image")
    code, _, err = cli("data", "pack", folder, tmp_path / "out", "--quiet")
    assert code == 0, err
    assert not any(line.startswith("mixgan: error") for line in err.splitlines())
    assert "'bad\\nmixgan: error: forged.png'" in err


# ---- shards: names, types, labels ------------------------------------------------------------

@pytest.fixture
def packed(tmp_path):
    src = tmp_path / "d.npz"
    rng = np.random.default_rng(0)
    np.savez(src, x=rng.integers(0, 256, (40, 1, 8, 8)).astype(np.uint8), y=np.arange(40) % 4)
    pack(f"npz:{src}", tmp_path / "s", shard_size=16)
    return tmp_path / "s"


def rewrite_manifest(folder: Path, edit) -> None:
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))


def redirect_first_shard(folder: Path, target: str) -> None:
    def edit(m):
        m["splits"]["train"]["shards"][0]["file"] = target
    rewrite_manifest(folder, edit)


@pytest.mark.parametrize("name", ["../../secret.npy", "/ABS/secret.npy", "sub/train-00000.npy", ".."])
def test_a_manifest_may_name_only_plain_files_inside_its_folder(packed, tmp_path, cli, name):
    secret = tmp_path / "secret.npy"
    secret.write_bytes(b"root:x:0:0:SECRET-CONTENT\n" * 10)
    (packed / "sub").mkdir()
    os.link(packed / "train-00000.npy", packed / "sub" / "train-00000.npy")
    redirect_first_shard(packed, name.replace("/ABS", str(tmp_path)).replace("../..", os.path.relpath(tmp_path, packed)))
    line = one_error_line(*cli("data", "verify", packed)[::2])
    assert "not a plain .npy file name" in line and "SECRET" not in line
    with pytest.raises(MixganError, match="not a plain .npy file name"):
        shard_dataset(packed)


def test_a_shard_that_is_a_link_is_refused_and_its_target_never_quoted(packed, tmp_path):
    secret = tmp_path / "secret.npy"
    secret.write_bytes(b"root:x:0:0:SECRET-CONTENT\n" * 10)
    (packed / "train-00000.npy").unlink()
    (packed / "train-00000.npy").symlink_to(secret)
    with pytest.raises(MixganError, match="not a regular file") as caught:
        verify(packed)
    assert "SECRET" not in str(caught.value)


def test_a_shard_header_is_never_quoted_in_the_error(packed):
    (packed / "train-00001.npy").write_bytes(b"root:x:0:0:SECRET-CONTENT\n" * 10)
    with pytest.raises(MixganError, match="no valid .npy header") as caught:
        verify(packed)
    assert "SECRET" not in str(caught.value)


def test_a_fifo_named_as_a_shard_is_refused_not_waited_on(packed, cli):
    """Opening a FIFO blocks until a writer comes: the reader must refuse it before opening it."""
    (packed / "train-00001.npy").unlink()
    os.mkfifo(packed / "train-00001.npy")

    def hung(signum, frame):
        raise TimeoutError("blocked on the FIFO")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(60)
    try:
        for argv in (["data", "verify", packed],
                     ["train", "--dataset", f"shards:{packed}", "--model", "gan", "--steps", 1, "--device", "cpu",
                      "--out", packed.parent / "run", "--quiet"]):
            code, _, err = cli(*argv)
            assert "not a regular file" in one_error_line(code, err)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert not (packed.parent / "run").exists()


def test_a_shard_of_another_type_names_both_types(packed):
    path = packed / "train-00000.npy"
    np.save(path, np.zeros((16, 1, 8, 8), np.uint16))
    with pytest.raises(MixganError, match=r"of uint16.*expected \(16, 1, 8, 8\) of uint8"):
        shard_dataset(packed, verify_hashes=False)


def relabel(folder: Path, labels: np.ndarray) -> None:
    """Replace the train labels, with the manifest's size and SHA-256 kept true to the new file."""
    path = folder / "train-labels.npy"
    np.save(path, labels.astype(np.int32))

    def edit(m):
        entry = m["splits"]["train"]["labels"]
        entry["bytes"], entry["sha256"] = path.stat().st_size, hashlib.sha256(path.read_bytes()).hexdigest()
    rewrite_manifest(folder, edit)


@pytest.mark.parametrize("bad", [-1, 4, 1_000_000])
def test_shard_labels_outside_the_classes_are_refused(packed, bad):
    y = np.load(packed / "train-labels.npy")
    y[3] = bad
    relabel(packed, y)
    with pytest.raises(MixganError, match=rf"label {bad} outside 0..3"):
        shard_dataset(packed)


def test_a_manifest_naming_more_classes_than_images_is_refused(packed):
    rewrite_manifest(packed, lambda m: m.update(classes=[str(i) for i in range(2000)]))
    with pytest.raises(MixganError, match="2000 classes for 40 images"):
        read_manifest(packed)


# ---- data pack: output folder, lock, clean failure -------------------------------------------

def test_two_packs_into_one_folder_cannot_both_write(tmp_path, cli):
    folder = grey_folder(tmp_path / "imgs")
    holder = ShardWriter(tmp_path / "out", (1, 8, 8))  # another pack, still writing
    line = one_error_line(*cli("data", "pack", folder, tmp_path / "out", "--quiet")[::2])
    assert "being written by another" in line
    holder.abort()
    assert not (tmp_path / "out").exists()
    code, _, err = cli("data", "pack", folder, tmp_path / "out", "--quiet")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["manifest.json", "test-00000.npy", "train-00000.npy"]


@pytest.mark.parametrize("where", ["non-empty", "source", "inside-source"])
def test_pack_writes_only_into_a_new_or_empty_folder_outside_the_source(tmp_path, cli, where):
    folder = grey_folder(tmp_path / "imgs")
    out = {"non-empty": tmp_path / "out", "source": folder, "inside-source": folder / "shards"}[where]
    if where == "non-empty":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    line = one_error_line(*cli("data", "pack", folder, out, "--quiet")[::2])
    assert ("not empty" if where == "non-empty" else "inside the source folder") in line
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_leftovers_of_a_killed_pack_are_cleared_by_the_next(tmp_path, cli):
    folder = grey_folder(tmp_path / "imgs")
    out = tmp_path / "out"
    out.mkdir()
    (out / "train-00000.npy").write_bytes(b"half")
    (out / ".train-00001.npy.tmp-12345").write_bytes(b"x" * 1000)
    code, _, err = cli("data", "pack", folder, out, "--quiet")
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "test-00000.npy", "train-00000.npy"]
    verify(out)


@pytest.mark.parametrize("out", ["FILE", "FILE/sub", "x" * 300])
def test_pack_into_a_file_or_an_impossible_name_is_one_line(tmp_path, cli, out):
    folder = grey_folder(tmp_path / "imgs")
    (tmp_path / "FILE").write_text("a file")
    line = one_error_line(*cli("data", "pack", folder, tmp_path / out, "--quiet")[::2])
    assert "FILE" in line or "x" * 50 in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["FILE", "imgs"]


def test_sigterm_during_pack_leaves_no_files(tmp_path, cli, monkeypatch):
    """SIGTERM arrives while the second shard is being written: the temporary file, the shards
    already written and the folder the pack made are all removed; the exit status is 143."""
    import mixgan.io

    folder = grey_folder(tmp_path / "imgs", 6)
    writes, real = [], mixgan.io._write

    def write(fd, data):
        writes.append(len(data))
        if len(writes) == 4:  # shard 1: header, data; shard 2: header, then the signal during its data
            os.kill(os.getpid(), signal.SIGTERM)
        return real(fd, data)

    monkeypatch.setattr(mixgan.io, "_write", write)
    code, _, err = cli("data", "pack", folder, tmp_path / "out", "--shard-size", 2, "--test-fraction", 0, "--quiet")
    assert code == 143 and len(writes) >= 4, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv", [["IMGS", "--test-fraction", "0.999"], ["ring"], ["IMGS", "--background", "nope"]])
def test_a_failed_pack_leaves_no_output(tmp_path, cli, argv):
    folder = grey_folder(tmp_path / "imgs")
    argv = [str(folder) if a == "IMGS" else a for a in argv]
    one_error_line(*cli("data", "pack", argv[0], tmp_path / "out", *argv[1:], "--quiet")[::2])
    assert not (tmp_path / "out").exists()


def test_a_pack_failing_midway_removes_what_it_wrote(tmp_path):
    """A failure after shards were written (here: images of the wrong shape) removes them all."""
    with pytest.raises(MixganError, match="uint8 images of shape"):
        with ShardWriter(tmp_path / "new" / "out", (1, 8, 8), shard_size=2) as w:
            w.add("train", np.zeros((5, 1, 8, 8), np.uint8))
            assert len(list((tmp_path / "new" / "out").glob("*.npy"))) == 2
            w.add("train", np.zeros((1, 3, 8, 8), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_gzip_idx_bomb_is_refused_before_it_is_decompressed(tmp_path):
    """An IDX .gz whose data expands far beyond any real image file is refused, not inflated."""
    import gzip

    from mixgan.data.idx import read_idx

    path = tmp_path / "train-images-idx3-ubyte.gz"
    with gzip.open(path, "wb") as fh:
        fh.write(struct.pack(">HBB", 0, 0x08, 3) + struct.pack(">3I", 8_000, 28, 28))
        for _ in range(8):
            fh.write(bytes(28 * 28 * 1000))
    assert path.stat().st_size < 50_000
    with pytest.raises(MixganError, match="expands more than 256 times"):
        read_idx(path, 3)
    grown = peak_rss_growth_mb(f"from mixgan.data.idx import read_idx\nfrom pathlib import Path\n"
                               f"try:\n    read_idx(Path({str(path)!r}), 3)\nexcept Exception:\n    pass")
    assert grown < 4, f"peak memory grew {grown:.0f} MB"


def test_data_boundary_benchmark_smoke_logs_its_measurements(tmp_path, monkeypatch):
    from benchmarks import data_boundary

    monkeypatch.setenv("MIXGAN_RESULTS_DIR", str(tmp_path / "results"))
    row = data_boundary.main(["--smoke"])
    entry = (tmp_path / "results" / "data_boundary.md").read_text()
    assert "python -m benchmarks.data_boundary --smoke" in entry
    assert f"| {row['images']} | {row['fingerprint_s']:.3f} |" in entry and row["thin_image_peak_mb"] < 200
