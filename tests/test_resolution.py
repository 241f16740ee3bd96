"""Every model at 64 px in colour (and one at 128 px): networks build, train and draw grids."""
import numpy as np
import pytest
import torch
from PIL import Image

import mixgan

from conftest import small_config

MODELS = [("gan", {}), ("gmgan", {"encoder.enabled": False}),
          ("gmgan", {"encoder.enabled": True, "encoder.neighbors": 2}),
          ("gmgan-supervised", {}), ("cgan", {"model.arch": "resnet"}), ("acgan", {"model.arch": "resnet"}),
          ("icgan", {"model.embedding": "pixels", "model.k": 2, "model.arch": "resnet"}),
          ("icgan-class", {"model.embedding": "pixels", "model.k": 2})]


def colour_npz(path, side, n=24, classes=3):
    """Colour images: class c is a square of colour c on grey, at a random place."""
    rng = np.random.default_rng(0)
    x = np.full((n, 3, side, side), 100, np.uint8)
    y = np.arange(n) % classes
    colours = np.array([[230, 20, 20], [20, 230, 20], [20, 20, 230]], np.uint8)
    for i in range(n):
        r, c = rng.integers(0, side // 2, 2)
        x[i, :, r:r + side // 2, c:c + side // 2] = colours[y[i]][:, None, None]
    np.savez(path, x=x, y=y)
    return f"npz:{path}"


@pytest.mark.parametrize("model, extra", MODELS, ids=[f"{m}-{i}" for i, (m, _) in enumerate(MODELS)])
def test_every_model_trains_at_64_px_in_colour(tmp_path, model, extra):
    dataset = colour_npz(tmp_path / "c.npz", 64)
    arch = extra.get("model.arch", "dcgan")
    cfg = small_config(tmp_path, **{"train.eval_every": 0, "model.name": model, "data.dataset": dataset, "model.arch": arch,
                                    "model.width": 4, "train.steps": 2, "train.batch_size": 6,
                                    "train.sample_every": 2, "train.checkpoint_every": 2, "prior.components": 3,
                                    "prior.latent_dim": 8, **extra})
    run = mixgan.train(cfg)
    r = mixgan.load(run.path)
    assert r.model.G.net.__class__.__name__.startswith("Conv" if arch == "dcgan" else "ResNet")
    s = r.sample(4, seed=0)
    assert s.x.shape == (4, 3, 64, 64) and torch.isfinite(s.x).all()
    grid = np.asarray(Image.open(sorted((run.path / "samples").glob("*.png"))[-1]))
    assert grid.ndim == 3 and (grid[..., 0] != grid[..., 1]).any()  # a colour picture, not grey in RGB


@pytest.mark.parametrize("arch", ["dcgan", "resnet"])
@pytest.mark.parametrize("model", ["gan", "gmgan", "gmgan-supervised", "cgan", "acgan", "icgan", "icgan-class"])
def test_every_body_builds_for_32_64_128_px_grey_and_colour(model, arch):
    """G and D of every model (conditional BN, projection and class heads included) map a batch at
    each size and channel count to images of that shape and to one logit per image."""
    from mixgan.config import build_config
    from mixgan.data import DataSpec
    from mixgan.models import build_model

    for side in (32, 64, 128):
        for channels in (1, 3):
            cfg = build_config({"model.name": model, "data.dataset": "npz:x", "model.arch": arch, "model.width": 2,
                                "prior.latent_dim": 4, "prior.components": 3, "train.device": "cpu"})
            m = build_model(cfg, DataSpec("x", (channels, side, side), num_classes=3), "cpu")
            eps, k = m.G.prior.draw(2, torch.Generator().manual_seed(0), device="cpu")
            cond = None
            if m.g_cond_dim():
                cond = torch.zeros(2, m.g_cond_dim())
            x = m.G(eps, k, cond)
            assert x.shape == (2, channels, side, side)
            out = m.D(x) if not m.g_cond_dim() else m.D(x, torch.zeros(2, m.g_cond_dim()))
            logits = out[0] if isinstance(out, tuple) else out
            assert logits.shape[0] == 2


def test_cgan_trains_at_128_px(tmp_path):
    dataset = colour_npz(tmp_path / "c.npz", 128, n=8)
    cfg = small_config(tmp_path, **{"train.eval_every": 0, "model.name": "cgan", "data.dataset": dataset, "model.arch": "resnet",
                                    "model.width": 2, "train.steps": 2, "train.batch_size": 4,
                                    "prior.latent_dim": 8})
    run = mixgan.train(cfg)
    assert mixgan.load(run.path).sample(2, seed=0).x.shape == (2, 3, 128, 128)


def test_width_zero_follows_the_image_side_shown_before_and_recorded_after_a_run(tmp_path, cli):
    """The image recipe's ``model.width = 0``: for the conv bodies 64 at 28 px, 32 at 32 px, 16 from 64 px.
    ``--dry-run`` shows the value with its source (and the encoder GM-GAN's K from the class folders),
    the run's networks and its config.toml have it; a width the user gives is kept."""
    from mixgan.config import build_config
    from mixgan.nets import auto_width
    from mixgan.training import RunDir
    from mixgan.training.loop import settings_from_data

    assert [auto_width("dcgan", (1, 28, 28)), auto_width("dcgan", (3, 32, 32)), auto_width("resnet", (3, 64, 64)),
            auto_width("auto", (3, 128, 128)), auto_width("dcgan", (1, 8, 8)), auto_width("mlp", (3, 64, 64)),
            auto_width("auto", (2,))] == [64, 32, 16, 16, 64, 64, 64]
    rng = np.random.default_rng(0)
    for c in ("cats", "dogs", "fish"):
        (tmp_path / "imgs" / c).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "imgs" / c / f"{i}.png")
    code, out, _ = cli("train", "--dataset", "folder", "--data-dir", str(tmp_path / "imgs"), "--dry-run")
    shown = {line.split()[0]: line.split(None, 2)[1:] for line in out.splitlines() if line.strip()}
    assert code == 0 and shown["model.width"] == ["32", "auto: 32 px images"], out
    assert shown["prior.components"] == ["3", "auto: the data's 3 classes"], out
    fashion = build_config({"data.dataset": "fashion-mnist", "model.name": "gan"})
    settings_from_data(fashion, (1, 28, 28))
    assert fashion.model.width == 64 and fashion.sources["model.width"] == "auto: 28 px images"
    base = {"data.dataset": "folder", "data.data_dir": str(tmp_path / "imgs"), "model.name": "gan", "train.steps": 1,
            "train.batch_size": 6, "train.device": "cpu", "train.eval_every": 0, "model.width": 0}
    run = mixgan.train({**base, "out": str(tmp_path / "auto")})
    saved = RunDir(run.path).config()
    assert saved.model.width == 32 and saved.sources["model.width"] == "auto: 32 px images"
    assert run.model.G.net.fc.out_features == 4 * 32 * 4 * 4  # the seed layer: width * 2^(3 - 1) channels, 4 x 4
    run = mixgan.train({**base, "model.width": 16, "out": str(tmp_path / "chosen")})
    assert RunDir(run.path).config().model.width == 16 and run.model.G.net.fc.out_features == 4 * 16 * 4 * 4
