"""``mixgan sample`` and ``Run.sample``: instances drawn evenly, every one in the grid, outputs
checked before any is written, classes by name."""
import numpy as np
import pytest
import torch
from PIL import Image

import mixgan
from mixgan.errors import MixganError

from conftest import small_config


@pytest.fixture(scope="module")
def icgan_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("icgan")
    return mixgan.train(small_config(tmp, **{"model.name": "icgan", "data.dataset": "digits", "model.width": 8,
                                             "model.embedding": "pixels", "prior.components": 1, "train.steps": 4,
                                             "train.checkpoint_every": 4, "train.sample_every": 4}))


def photos(folder, count):
    folder.mkdir()
    g = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(g.integers(0, 255, (8, 8), dtype=np.uint8)).save(folder / f"p{i:02d}.png")
    return folder


@pytest.mark.parametrize("n, m", [(12, 6), (90, 16), (5, 7)])
def test_run_sample_spreads_samples_evenly_over_given_instances(icgan_run, n, m):
    for request in ({"instances": list(range(100, 100 + m))},
                    {"conditions": icgan_run.model.features[:m].cpu()},
                    {"instances": icgan_run.data.images("test")[:m]}):
        s = icgan_run.sample(n, **request)
        counts = torch.bincount(s.instance - (100 if "instances" in request and isinstance(
            request["instances"], list) else 0), minlength=m)
        assert len(s.x) == n and len(counts) == m
        assert set(counts.tolist()) <= {n // m, -(-n // m)}, counts
        assert counts[: n % m].tolist() == [-(-n // m)] * (n % m)  # the first n mod m get one more


def test_cli_instances_from_photos_are_drawn_evenly_and_all_shown(icgan_run, tmp_path, cli):
    folder = photos(tmp_path / "photos", 16)
    out, grid = tmp_path / "s.npz", tmp_path / "g.png"
    code, _, err = cli("sample", icgan_run.path, "--n", 90, "--instances", folder, "--out", out, "--grid", grid)
    assert code == 0, err
    counts = np.bincount(np.load(out)["instance"], minlength=16)
    assert sorted(set(counts.tolist())) == [5, 6]
    img = np.asarray(Image.open(grid))
    cell = (8 + 1) * 8
    assert img.shape[:2] == (16 * cell + 8, (1 + 6) * cell + 8)  # every photo, then its 5 or 6 samples
    code, _, err = cli("sample", icgan_run.path, "--n", 12, "--instances", *sorted(folder.iterdir())[:6],
                       "--out", out)
    assert code == 0 and np.bincount(np.load(out)["instance"]).tolist() == [2] * 6


def test_grid_says_how_many_instances_it_left_out(icgan_run, tmp_path, cli, monkeypatch):
    import mixgan.cli.instances as instances

    monkeypatch.setattr(instances, "MAX_GRID_ROWS", 4)
    code, out, err = cli("sample", icgan_run.path, "--n", 10, "--instances", photos(tmp_path / "p", 6),
                         "--out", tmp_path / "s.npz", "--grid", tmp_path / "g.png")
    assert code == 0, err
    assert "the first 4 instances shown, 2 left out" in out
    assert np.asarray(Image.open(tmp_path / "g.png")).shape[0] == 4 * 72 + 8


def test_an_unwritable_grid_is_refused_before_the_npz_is_written(icgan_run, tmp_path, cli):
    out = tmp_path / "s.npz"
    (tmp_path / "taken.png").mkdir()
    (tmp_path / "afile").write_text("")
    for grid in (tmp_path / "taken.png", tmp_path / "afile" / "g.png", tmp_path / "missing" / "g.png"):
        code, _, err = cli("sample", icgan_run.path, "--n", 4, "--out", out, "--grid", grid)
        assert code == 2 and err.startswith("mixgan: error: --grid") and len(err.strip().splitlines()) == 1
        assert not out.exists()
    code, _, err = cli("sample", icgan_run.path, "--n", 4, "--out", tmp_path / "s.txt")
    assert code == 2 and "expected a .npz file name" in err


def test_class_by_name_or_index(tmp_path, cli):
    root = tmp_path / "data"
    g = np.random.default_rng(0)
    for name in ("cat", "dog", "owl"):
        (root / name).mkdir(parents=True)
        for i in range(8):
            Image.fromarray(g.integers(0, 255, (8, 8), dtype=np.uint8)).save(root / name / f"{i}.png")
    run = mixgan.train(small_config(tmp_path, **{"model.name": "cgan", "data.dataset": "folder",
                                                 "data.data_dir": str(root), "model.width": 8, "train.steps": 2,
                                                 "train.checkpoint_every": 2, "train.sample_every": 2,
                                                 "train.batch_size": 8}))
    assert run.data.class_names == ("cat", "dog", "owl") and run.model.spec.class_names == ("cat", "dog", "owl")
    out = tmp_path / "s.npz"
    for value, index in (("owl", 2), ("1", 1)):
        code, _, err = cli("sample", run.path, "--n", 3, "--class", value, "--out", out)
        assert code == 0, err
        assert np.load(out)["label"].tolist() == [index] * 3
    code, _, err = cli("sample", run.path, "--n", 3, "--class", "emu", "--out", out)
    assert code == 2 and "one of cat, dog, owl" in err
    code, _, err = cli("sample", run.path, "--n", 30, "--out", out, "--grid", tmp_path / "g.png")
    assert code == 0, err
    img = np.asarray(Image.open(tmp_path / "g.png").convert("L"))
    plain = 10 * (8 + 1) * 8 + 8  # ten samples a row, no labels
    assert img.shape[0] == 3 * 72 + 8 and img.shape[1] > plain  # a row per class, named on its left
    assert (img[:, : img.shape[1] - plain] < 128).any()


def test_grid_without_instances_shows_a_row_per_drawn_instance(icgan_run, tmp_path, cli):
    """`sample RUN --n N --grid` with no --instances draws stored instances at random; the grid has
    one row per instance drawn (it, then its samples)."""
    import numpy as np

    code, out, err = cli("sample", icgan_run.path, "--n", "12", "--out", tmp_path / "s.npz", "--grid", tmp_path / "s.png")
    assert code == 0, err
    drawn = len(set(np.load(tmp_path / "s.npz")["instance"].tolist()))
    from PIL import Image

    height = Image.open(tmp_path / "s.png").height
    side = icgan_run.model.shape[1]
    assert drawn >= 2 and height >= drawn * side
