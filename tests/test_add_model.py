"""Adding a model is one class and one registry line: no recipe file, and the CLI trains, samples
and evaluates it on points and on images."""
import json

import numpy as np
import pytest

from mixgan.models import MODELS
from mixgan.models.base import GANModel


class LeastSquaresGAN(GANModel):
    """A model the package does not ship: the least-squares GAN (Mao et al. 2017), N(0, I) prior."""

    name = "lsgan"

    def discriminator_loss(self, real, fake):
        return ((self.d_logits(real) - 1) ** 2).mean() + (self.d_logits(fake) ** 2).mean()

    def generator_loss(self, fake):
        return ((self.d_logits(fake, train=False) - 1) ** 2).mean()


@pytest.fixture
def lsgan(monkeypatch):
    monkeypatch.setitem(MODELS, "lsgan", LeastSquaresGAN)  # the registry line


@pytest.mark.parametrize("dataset, family, metrics, score", [("ring", "ring", "modes", "modes"),
                                                             ("digits", "digits", "fid", "fid")])
def test_a_model_registered_at_run_time_trains_samples_and_evaluates(lsgan, cli, tmp_path, dataset, family,
                                                                     metrics, score):
    run = tmp_path / "run"
    code, out, err = cli("train", "--model", "lsgan", "--dataset", dataset, "--steps", "3", "--batch-size", "16",
                         "--set", "model.width=8", "--set", "train.eval_every=0", "--set", "train.checkpoint_every=3",
                         "--device", "cpu", "--out", run, "--quiet")
    assert code == 0, err
    assert out.startswith(f"recipe: {family}-lsgan = ")  # the family's base as it is
    code, out, err = cli("sample", run, "--n", "20", "--out", tmp_path / "s.npz", "--device", "cpu")
    assert code == 0, err
    x = np.load(tmp_path / "s.npz")["x"]
    assert len(x) == 20 and np.isfinite(x).all()
    code, out, err = cli("evaluate", run, "--n", "200", "--n-real", "200", "--metrics", metrics, "--device", "cpu",
                         "--quiet", "--json", tmp_path / "m.json")
    assert code == 0, err
    assert np.isfinite(json.loads((tmp_path / "m.json").read_text())[score])


def test_an_unregistered_model_is_refused_by_name(cli, tmp_path):
    code, _, err = cli("train", "--model", "lsgan", "--dataset", "ring", "--out", tmp_path / "r", "--dry-run")
    assert code == 2 and err.startswith("mixgan: error: unknown model 'lsgan' (choose from gan, gmgan")
