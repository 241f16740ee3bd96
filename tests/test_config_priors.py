from pathlib import Path

import pytest
import torch

from mixgan.config import build_config
from mixgan.errors import MixganError
from mixgan.priors import GaussianMixturePrior, MAX_SCALE, MIN_SCALE


def test_toml_then_overrides_win(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[prior]\ncomponents = 7\nsigma = 0.3\n[train]\nsteps = 11\n')
    cfg = build_config({"train.steps": 12}, config_file=f, overrides=["sigma=0.4"])
    assert (cfg.prior.components, cfg.prior.sigma, cfg.train.steps) == (7, 0.4, 12)


@pytest.mark.parametrize("override, message", [
    (["nope=1"], "unknown setting 'nope'"),
    (["components=0"], "components must be >= 1"),
    (["c=-1"], "c must be > 0"),
    (["steps=abc"], "expects int"),
    (["covariance=tri"], "covariance must be"),
    (["novalue"], "key=value"),
])
def test_bad_settings_are_named(override, message):
    with pytest.raises(MixganError, match=message):
        build_config(overrides=override)


def test_static_mixture_samples_come_from_their_component():
    prior = GaussianMixturePrior(5, 3, c=4.0, sigma=0.01, seed=1)
    z, k = prior.sample(2000, generator=torch.Generator().manual_seed(0))
    assert z.shape == (2000, 3) and set(k.tolist()) == set(range(5))
    assert torch.allclose(z, prior.means[k], atol=0.06)
    z3, k3 = prior.sample(100, component=3)
    assert (k3 == 3).all() and torch.allclose(z3, prior.means[3].expand(100, -1), atol=0.06)
    assert (prior.means.abs() <= 4.0).all()


def test_scale_multiplies_the_spread():
    prior = GaussianMixturePrior(2, 4, sigma=0.5, seed=0)
    g = torch.Generator().manual_seed(0)
    z1, k = prior.sample(5000, component=0, scale=1.0, generator=g)
    z2, _ = prior.sample(5000, component=0, scale=2.0, generator=torch.Generator().manual_seed(0))
    assert torch.allclose((z2 - prior.means[0]), 2 * (z1 - prior.means[0]), atol=1e-5)
    assert abs(float((z1 - prior.means[0]).std()) - 0.5) < 0.03


@pytest.mark.parametrize("cov", ["diag", "full"])
def test_dynamic_mixture_trains_and_scales_stay_bounded(cov):
    prior = GaussianMixturePrior(3, 2, sigma=1.0, dynamic=True, covariance=cov)
    opt = torch.optim.SGD(prior.parameters(), lr=100.0)
    for _ in range(20):  # push every scale to collapse
        z, k = prior.sample(256)
        loss = ((z - prior.means[k].detach()) ** 2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    diag = torch.diagonal(prior.scales(), dim1=-2, dim2=-1)
    assert (diag >= MIN_SCALE * (1 - 1e-5)).all() and (diag <= MAX_SCALE * (1 + 1e-5)).all()
    assert torch.isfinite(prior.scales()).all()


def test_component_out_of_range():
    with pytest.raises(MixganError, match="component must be in"):
        GaussianMixturePrior(3, 2).sample(4, component=3)


def test_log_prob_picks_the_generating_component():
    prior = GaussianMixturePrior(6, 8, c=3.0, sigma=0.2, seed=2)
    z, k = prior.sample(300)
    assert (prior.log_prob_components(z).argmax(1) == k).float().mean() > 0.98



def _prior_learns_from_g_alone(path, covariance):
    """D's loss leaves the prior without gradients; G's loss gives mu_k and A_k gradients, and a
    short run moves them from their initial values."""
    import mixgan
    from mixgan.data import load_dataset
    from mixgan.models import build_model
    from mixgan.priors import build_prior

    from conftest import small_config

    cfg = small_config(path, **{"prior.dynamic": True, "prior.covariance": covariance,
                                "train.steps": 5, "train.checkpoint_every": 5, "train.sample_every": 5})
    data = load_dataset("ring")
    model = build_model(cfg, data.spec())
    model.attach_data(data)
    prior, gen = model.G.prior, torch.Generator().manual_seed(0)
    model.discriminator_loss(model.batch(torch.arange(32)), model.fake(32, gen, grad=False)).backward()
    assert all(p.grad is None for p in prior.parameters())
    model.generator_loss(model.fake(32, gen, grad=True)).backward()
    for name, p in prior.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    start = dict(build_prior(cfg, True, seed=cfg.train.seed).named_parameters())
    trained = mixgan.train(cfg).model.G.prior
    for name, p in trained.named_parameters():
        assert not torch.allclose(p, start[name]), f"{name} did not move"


@pytest.mark.parametrize("cov", ["diag", "full"])
def test_dynamic_prior_means_and_scales_learn_from_the_generator_loss(tmp_path, cov, monkeypatch):
    _prior_learns_from_g_alone(tmp_path / "a", cov)
    original = GaussianMixturePrior.forward

    def detached_mean(self, eps, k, scale=1.0):  # same z, but no gradient reaches mu
        return original(self, eps, k, scale) - self.means[k] + self.means[k].detach()

    monkeypatch.setattr(GaussianMixturePrior, "forward", detached_mean)
    with pytest.raises(AssertionError, match="means"):
        _prior_learns_from_g_alone(tmp_path / "b", cov)


@pytest.mark.parametrize("path", sorted((Path(__file__).parents[1] / "configs").glob("*.toml")), ids=lambda p: p.name)
def test_every_shipped_config_loads_validates_and_keeps_its_values(path):
    """Each file in configs/ resolves without error, and every value it sets reaches the config."""
    from mixgan.config import canonical_key, flat_dict, read_toml

    cfg = build_config(config_file=path)
    resolved = flat_dict(cfg)
    for key, value in read_toml(path).items():
        assert resolved[canonical_key(key)] == value, key
        assert cfg.sources[canonical_key(key)] == f"file {path}", key


def test_every_augmentation_the_nets_offer_is_a_valid_setting():
    """train.augment accepts exactly the operations DiffAugment implements (colour among them)."""
    from mixgan.config import AUGMENTS, augment_error
    from mixgan.nets.augment import DiffAugment

    assert set(AUGMENTS) == set(DiffAugment.OPS)
    assert augment_error("color,translation,cutout") == ""
