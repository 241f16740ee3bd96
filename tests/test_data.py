import gzip
import pickle

import numpy as np
import pytest
import torch

from mixgan.data import load_dataset, read_idx
from mixgan.data.images import image_folder
from mixgan.errors import MixganError

from conftest import idx_bytes


def write_idx(path, array, gz=False):
    raw = idx_bytes(array.astype(np.uint8))
    path.write_bytes(gzip.compress(raw) if gz else raw)


def idx_arrays(n_train=20, n_test=10, labels_train=None):
    rng = np.random.default_rng(0)
    return {"train-images-idx3-ubyte.gz": rng.integers(0, 256, (n_train, 28, 28)),
            "train-labels-idx1-ubyte.gz": rng.integers(0, 10, labels_train or n_train),
            "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
            "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test)}


def idx_folder(tmp_path, **sizes):
    arrays = idx_arrays(**sizes)
    for name, array in arrays.items():
        write_idx(tmp_path / name, array, gz=name.endswith(".gz"))
    return tmp_path


def test_toy_mixtures_are_seeded_and_labelled():
    a, b = load_dataset("grid", seed=3), load_dataset("grid", seed=3)
    assert torch.equal(a.x_train, b.x_train)
    assert a.num_classes == 25 and a.centers.shape == (25, 2)
    err = (a.x_train - a.centers[a.y_train]).std()
    assert abs(float(err) - 0.05) < 0.005
    ring = load_dataset("ring")
    assert torch.allclose(ring.centers.norm(dim=1), torch.full((8,), 2.0))


def test_digits_range_and_split():
    d = load_dataset("digits")
    assert d.x_train.shape[1:] == (1, 8, 8) and len(d.x_train) + len(d.x_test) == 1797
    assert d.x_train.dtype == torch.uint8 and d.levels == 16 and d.num_classes == 10
    x = d.images()
    assert x.min() == -1 and x.max() == 1
    assert torch.equal(x, d.x_train.float() / 8 - 1)  # the values 0..16 map exactly, as loaded before


def test_idx_round_trip_keeps_every_pixel_and_label_in_order(tmp_path):
    d = load_dataset("mnist", str(idx_folder(tmp_path)))
    a = idx_arrays()
    assert d.x_train.shape == (20, 1, 28, 28) and d.x_test.shape == (10, 1, 28, 28)
    for x, y, images, labels in ((d.x_train, d.y_train, "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
                                 (d.x_test, d.y_test, "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")):
        assert torch.equal(x[:, 0].to(torch.int64), torch.from_numpy(a[images]))
        assert y.tolist() == a[labels].tolist()


def test_idx_wrong_magic(tmp_path):
    p = tmp_path / "x"
    p.write_bytes(b"\x12\x34\x08\x03" + b"\0" * 20)
    with pytest.raises(MixganError, match="wrong IDX magic"):
        read_idx(p, 3)


def test_idx_truncated(tmp_path):
    p = tmp_path / "x"
    write_idx(p, np.zeros((5, 28, 28)))
    p.write_bytes(p.read_bytes()[:-10])
    with pytest.raises(MixganError, match="truncated"):
        read_idx(p, 3)


def test_idx_counts_differ(tmp_path):
    with pytest.raises(MixganError, match="20 images but .* 19 labels"):
        load_dataset("mnist", str(idx_folder(tmp_path, labels_train=19)))


def test_missing_folder():
    with pytest.raises(MixganError, match="does not exist"):
        load_dataset("fashion-mnist", "/nonexistent/folder")


def test_unknown_dataset():
    with pytest.raises(MixganError, match="unknown dataset 'imagenet'"):
        load_dataset("imagenet")


def _png(path, size, value=128, mode="L"):
    from PIL import Image

    Image.new(mode, size, value).save(path)


def test_image_folder_gives_sub_folders_sorted_class_numbers_and_keeps_pixels(tmp_path):
    """Every image is one grey level that names its class (dog 10-14, cat 100-104): the loaded
    images must come back with their own pixels and their folder's class, whatever the split."""
    for c, base in (("dog", 10), ("cat", 100)):
        (tmp_path / c).mkdir()
        for i in range(5):
            _png(tmp_path / c / f"{i}.png", (8, 8), value=base + i)
    d = image_folder(tmp_path, test_fraction=0.2)
    assert d.num_classes == 2 and d.x_train.shape[1:] == (1, 8, 8)
    x, y = torch.cat([d.x_train, d.x_test]), torch.cat([d.y_train, d.y_test])
    grey = x.to(torch.int64)
    assert (grey == grey[:, :, :1, :1]).all()  # each image one grey level
    value = grey[:, 0, 0, 0]
    assert sorted(value.tolist()) == [10, 11, 12, 13, 14, 100, 101, 102, 103, 104]
    assert torch.equal(y, (value < 100).long())  # sorted folder names: cat 0, dog 1
    assert len(d.x_test) == 2


def test_image_folder_keeps_rgb_channels_apart(tmp_path):
    _png(tmp_path / "a.png", (8, 8), value=(10, 120, 250), mode="RGB")
    _png(tmp_path / "b.png", (8, 8), value=(10, 120, 250), mode="RGB")
    d = image_folder(tmp_path, test_fraction=0.5)
    assert d.x_train.shape == (1, 3, 8, 8) and d.y_train is None
    channels = d.x_train[0].float().flatten(1)
    assert channels.tolist() == [[10.0] * 64, [120.0] * 64, [250.0] * 64]


def test_image_folder_resizes_mixed_sizes_and_modes_to_one_square_colour_size(tmp_path):
    """JPEG, PNG and WebP of different sizes, grey and colour: auto gives 64 px and 3 channels."""
    from PIL import Image

    Image.new("RGB", (100, 60), (200, 10, 10)).save(tmp_path / "a.jpg", quality=95)
    Image.new("L", (30, 50), 90).save(tmp_path / "b.png")
    Image.new("RGBA", (64, 64), (0, 0, 255, 255)).save(tmp_path / "c.webp", lossless=True)
    Image.new("I;16", (40, 40), 65535).save(tmp_path / "d.png")
    d = image_folder(tmp_path, test_fraction=0.25)
    x = torch.cat([d.x_train, d.x_test])
    assert x.shape == (4, 3, 64, 64) and x.dtype == torch.uint8 and d.skipped == 0
    colours = sorted(tuple(int(v) for v in img[:, 32, 32]) for img in x)
    assert colours[0] == (0, 0, 255) and colours[1] == (90, 90, 90) and colours[3] == (255, 255, 255)
    assert abs(colours[2][0] - 200) <= 3 and colours[2][1] <= 20  # JPEG: close, not exact


def test_image_folder_native_square_size_and_grey_kept_when_all_share_them(tmp_path):
    for i in range(3):
        _png(tmp_path / f"{i}.png", (12, 12), value=i)
    d = image_folder(tmp_path)
    assert d.shape == (1, 12, 12)
    assert image_folder(tmp_path, resolution=16, channels=3).shape == (3, 16, 16)


def test_fit_image_resizes_the_short_side_and_keeps_the_centre(tmp_path):
    """A 30x10 image with three 10-px columns black, white, black: at 10 px only the white centre is left."""
    from PIL import Image

    from mixgan.data import fit_image

    a = np.zeros((10, 30), np.uint8)
    a[:, 10:20] = 255
    out = fit_image(Image.fromarray(a), 10, 1)
    assert out.shape == (1, 10, 10) and (out == 255).all()
    out = fit_image(Image.fromarray(a), 5, 3)  # shrunk to 15x5: the centre 5 columns, white, in RGB
    assert out.shape == (3, 5, 5) and (out[:, :, 1:4] >= 250).all()


def test_image_folder_skips_unreadable_files_with_one_warning_and_counts_them(tmp_path):
    from mixgan.errors import MixganWarning

    for i in range(4):
        _png(tmp_path / f"{i}.png", (8, 8), value=i)
    (tmp_path / "junk.jpg").write_bytes(b"not an image at all")
    whole = (tmp_path / "0.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(whole[:len(whole) // 2])
    with pytest.warns(MixganWarning, match="skipped 2 unreadable") as caught:
        d = image_folder(tmp_path)
    assert len(caught) == 1 and d.skipped == 2 and len(d.x_train) + len(d.x_test) == 4


def test_cli_prints_skipped_files_as_one_warning_line(tmp_path, cli):
    for i in range(6):
        _png(tmp_path / f"{i}.png", (8, 8), value=i * 40)
    (tmp_path / "junk.png").write_bytes(b"\x89PNG broken")
    code, _, err = cli("train", "--model", "gan", "--dataset", "folder", "--data-dir", tmp_path, "--steps", 1,
                       "--batch-size", 4, "--device", "cpu", "--out", tmp_path / "run", "--quiet",
                       "--set", "model.width=4")
    assert code == 0, err
    lines = [l for l in err.splitlines() if "warning" in l]
    assert lines == [f"mixgan: warning: {tmp_path}: skipped 1 unreadable image file(s) (junk.png)"]


def test_image_folder_with_nothing_readable_is_one_error(tmp_path):
    (tmp_path / "a.png").write_bytes(b"junk")
    (tmp_path / "b.jpg").write_bytes(b"")
    with pytest.raises(MixganError, match="none of the 2 image files"):
        image_folder(tmp_path)


def test_resolution_and_channels_apply_to_idx_datasets(tmp_path):
    d = load_dataset("mnist", str(idx_folder(tmp_path)), resolution=16, channels=3)
    assert d.x_train.shape == (20, 3, 16, 16) and d.x_test.shape == (10, 3, 16, 16)
    assert d.fingerprint() != load_dataset("mnist", str(tmp_path)).fingerprint()
    digits = load_dataset("digits", resolution=8, channels=3)  # 0..16 rescaled to 0..255 exactly at the ends
    assert digits.levels == 255 and digits.images().min() == -1 and digits.images().max() == 1


def test_image_folder_empty(tmp_path):
    with pytest.raises(MixganError, match="no PNG, JPEG or WebP"):
        image_folder(tmp_path)


def test_cifar_rows_are_channel_planes_not_interleaved_pixels(tmp_path):
    """A CIFAR row holds the 1024 red values, then green, then blue, each plane row by row."""
    plane = np.arange(1024).reshape(32, 32) % 251
    row = np.concatenate([plane, 255 - plane, (plane * 7) % 256]).reshape(-1).astype(np.uint8)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (tmp_path / name).write_bytes(pickle.dumps({b"data": np.stack([row, row[::-1]]), b"labels": [5, 6]}))
    d = load_dataset("cifar10", str(tmp_path))
    img = d.x_test[0].to(torch.int64).numpy()
    assert img.shape == (3, 32, 32)
    assert (img[0] == plane).all() and (img[1] == 255 - plane).all() and (img[2] == (plane * 7) % 256).all()
    assert d.y_train.tolist() == [5, 6] * 5


class _Payload:
    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path('PWNED').write_text('x')",))


def test_cifar_batches_load_and_payload_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), b"labels": [0, 1, 2, 3]}
        (tmp_path / name).write_bytes(pickle.dumps(batch))
    d = load_dataset("cifar10", str(tmp_path))
    assert d.x_train.shape == (20, 3, 32, 32) and d.y_test.tolist() == [0, 1, 2, 3]
    (tmp_path / "data_batch_3").write_bytes(pickle.dumps({b"data": _Payload(), b"labels": [0]}))
    with pytest.raises(MixganError, match="data_batch_3: not a CIFAR-10 batch .*refused global"):
        load_dataset("cifar10", str(tmp_path))
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.fashion
def test_fashion_mnist_from_debian_package():
    d = load_dataset("fashion-mnist")
    assert d.x_train.shape == (60000, 1, 28, 28) and d.x_test.shape == (10000, 1, 28, 28)
    assert sorted(d.y_train.unique().tolist()) == list(range(10))
