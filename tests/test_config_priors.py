from pathlib import Path

import pytest
import torch

from mixgan.config import build_config, load_config
from mixgan.errors import MixganError
from mixgan.priors import GaussianMixturePrior, MAX_SCALE, MIN_SCALE


def test_toml_then_overrides_win(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[prior]\ncomponents = 7\nsigma = 0.3\n[train]\nsteps = 11\n')
    cfg = build_config({"train.steps": 12}, config_file=f, overrides=["sigma=0.4"])
    assert (cfg.prior.components, cfg.prior.sigma, cfg.train.steps) == (7, 0.4, 12)


@pytest.mark.parametrize("dataset, family", [("grid", "toy"), ("ring", "toy"), ("digits", "image"),
                                             ("fashion-mnist", "image")])
def test_dataset_family_preset_applies_and_the_user_wins(dataset, family):
    from mixgan.config import WITH_SWITCH, presets

    cfg = build_config({"data.dataset": dataset})
    preset = presets(dataset, cfg.model.name, "auto")
    preset.update({k: v for switch, group in WITH_SWITCH.items() if preset.get(switch) for k, v in group.items()})
    for key, value in preset.items():
        section, name = key.split(".")
        assert getattr(getattr(cfg, section), name) == value, key
    assert (cfg.model.arch == "mlp") == (family == "toy")
    assert build_config({"data.dataset": dataset, "model.width": 7}).model.width == 7


def test_model_preset_sits_between_the_family_and_the_dataset():
    sigma = lambda **v: build_config(v).prior.sigma  # noqa: E731
    assert sigma(dataset="fashion-mnist", name="gmgan-supervised") == 0.75
    assert sigma(dataset="fashion-mnist", name="gmgan") == 0.15  # the encoder's one-hot Gaussians
    assert sigma(dataset="fashion-mnist", name="gan") == 1.0
    assert sigma(dataset="digits", name="gmgan-supervised") == 1.0  # digits keeps the recipe of its figures
    assert sigma(dataset="fashion-mnist", name="gmgan-supervised", sigma=0.5) == 0.5
    assert sigma(**{"data.dataset": "fashion-mnist", "model.name": "gmgan-supervised"}) == 0.75


def test_a_gpu_trains_images_with_a_larger_batch_unless_told_otherwise(monkeypatch):
    batch = lambda **v: build_config({"data.dataset": "fashion-mnist", **v}).train.batch_size  # noqa: E731
    assert batch(**{"train.device": "cuda"}) == batch(**{"train.device": "cuda:1"}) == 128
    assert batch(**{"train.device": "cpu"}) == 32
    assert batch(**{"train.device": "cuda", "train.batch_size": 48}) == 48
    # the device changes nothing else than its preset lists
    from mixgan.config import DEVICE_PRESETS

    gpu, cpu = (build_config({"data.dataset": "fashion-mnist", "train.device": d}).to_dict() for d in ("cuda", "cpu"))
    changed = {f"{sec}.{k}" for sec in ("data", "model", "prior", "train") for k in gpu[sec] if gpu[sec][k] != cpu[sec][k]}
    assert changed == set(DEVICE_PRESETS[("image", "cuda")]) | {"train.device"}
    # and a model's own device preset comes on top of the family's
    gan = build_config({"data.dataset": "fashion-mnist", "model.name": "gan", "train.device": "cuda"})
    assert {"train.lr_g": gan.train.lr_g, "train.lr_d": gan.train.lr_d} == DEVICE_PRESETS[("image", "cuda", "gan")]
    assert gan.train.batch_size == 128
    for available, size in ((True, 128), (False, 32)):  # auto follows what the machine has
        monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
        assert batch() == size
    # digits keeps the recipe of its figures, toy data its own batch
    assert build_config({"data.dataset": "digits", "train.device": "cuda"}).train.batch_size == 64
    assert build_config({"data.dataset": "grid", "train.device": "cuda"}).train.batch_size == 256


def test_gmgan_on_images_clusters_with_an_encoder_except_on_digits():
    fashion, digits = (build_config({"data.dataset": d, "model.name": "gmgan"}) for d in ("fashion-mnist", "digits"))
    assert fashion.model.encoder and (fashion.prior.means, fashion.prior.components, fashion.prior.sigma) == ("onehot", 10, 0.15)
    assert not digits.model.encoder and digits.prior.means == "uniform"
    assert not build_config({"data.dataset": "fashion-mnist", "model.name": "gan"}).model.encoder
    prior = lambda cfg: (cfg.model.encoder, cfg.prior.means, cfg.prior.components, cfg.prior.sigma)  # noqa: E731
    paper = build_config({"model.name": "gmgan"}, config_file=Path(__file__).parents[1] / "configs" / "fashion-gmgan-paper.toml")
    assert prior(paper) == (False, "uniform", 30, 1.0)
    # turning the encoder off takes its Gaussians with it; the user's own prior settings stay
    off = build_config({"data.dataset": "fashion-mnist"}, overrides=["encoder=false"])
    assert prior(off) == prior(paper)
    mine = build_config({"data.dataset": "fashion-mnist"}, overrides=["sigma=0.3", "components=12"])
    assert prior(mine) == (True, "onehot", 12, 0.3)


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


def test_resolved_config_round_trips(tmp_path):
    from mixgan.config import dump_toml

    cfg = build_config({"data.dataset": "grid", "prior.dynamic": True, "out": "x"})
    (tmp_path / "c.toml").write_text(dump_toml(cfg))
    assert load_config(tmp_path / "c.toml") == cfg


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
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    cfg = build_config(config_file=path)
    for section, values in tomllib.loads(path.read_text()).items():
        for name, value in values.items():
            assert getattr(getattr(cfg, section), name) == value, f"{section}.{name}"
