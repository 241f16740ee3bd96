"""Class-conditional synthesis: supervised GM-GAN, cGAN (labels and vectors), AC-GAN, npz data."""
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import mixgan
from mixgan.config import Recipe

PREVIOUS_IMAGE_RECIPE = Recipe.read("image-dcgan-ns").values
from mixgan.data import load_dataset
from mixgan.errors import MixganError
from mixgan.models import build_model
from mixgan.models.base import Batch, wrong_labels

from conftest import small_config


def digits_model(tmp_path, name, device="cpu", **values):
    cfg = small_config(tmp_path, device, **{"model.name": name, "data.dataset": "digits", "model.width": 8,
                                    "prior.latent_dim": 8, **values})
    return build_model(cfg, load_dataset("digits").spec(), device)


class FirstColumns(nn.Module):
    """A stand-in discriminator whose logits are the first inputs, so d loss / d logit = d loss / d x."""

    def __init__(self, columns: int, aux: int = 0):
        super().__init__()
        self.columns, self.aux = columns, aux

    def forward(self, x, cond=None):
        flat = x.flatten(1)
        logits = flat[:, :self.columns]
        if self.aux:
            return logits[:, 0], flat[:, self.columns:self.columns + self.aux]
        return logits


def leaf(n, values=None):
    x = torch.zeros(n, 1, 8, 8) if values is None else values
    return x.requires_grad_(True)


# ---- supervised GM-GAN -----------------------------------------------------------------
def test_supervised_gmgan_needs_k_a_multiple_of_the_classes(tmp_path):
    with pytest.raises(MixganError, match="multiple of the 10 classes, got 15"):
        digits_model(tmp_path, "gmgan-supervised", **{"prior.components": 15})
    assert digits_model(tmp_path, "gmgan-supervised", **{"prior.components": 30}).components == 30


def test_supervised_gmgan_losses_push_the_right_logit(tmp_path):
    m = digits_model(tmp_path, "gmgan-supervised", **{"prior.components": 20})
    m.D = m.D_train = FirstColumns(10)
    y = torch.tensor([3, 7, 0])
    real, fake = leaf(3), leaf(3)
    k = torch.tensor([13, 2, 19])  # classes f(k) = 3, 2, 9
    m.discriminator_loss(Batch(real, y=y), Batch(fake, y=m.class_of(k))).backward()
    g_real, g_fake = real.grad.flatten(1)[:, :10], fake.grad.flatten(1)[:, :10]
    rows = torch.arange(3)
    assert (g_real[rows, y] < 0).all()  # descending the loss raises logit y of real (x, y)
    assert (g_fake[rows, torch.tensor([3, 2, 9])] > 0).all()  # ... and lowers logit f(k) of G(z_k)
    for g, cls in ((g_real, y), (g_fake, k % 10)):
        others = torch.ones_like(g, dtype=torch.bool)
        others[rows, cls] = False
        assert (g[others] == 0).all()  # no other class's logit is touched
    fake_g = leaf(3)
    m.generator_loss(Batch(fake_g, y=m.class_of(k))).backward()
    g = fake_g.grad.flatten(1)[:, :10]
    assert (g[rows, torch.tensor([3, 2, 9])] < 0).all() and (g != 0).sum() == 3  # G raises logit f(k)


def test_supervised_gmgan_samples_class_y_from_its_gaussians(tmp_path, device):
    m = digits_model(tmp_path, "gmgan-supervised", device, **{"prior.components": 30})
    gen = torch.Generator(m.device).manual_seed(0)
    s = m.sample(600, label=4, generator=gen)
    assert (s.label == 4).all()
    assert sorted(s.component.unique().tolist()) == [4, 14, 24]  # all of f^-1(4), nothing else
    s = m.sample(3000, generator=gen)
    assert torch.equal(s.label, s.component % 10)
    assert np.bincount(s.label.numpy(), minlength=10).min() > 200  # classes drawn uniformly
    with pytest.raises(MixganError, match="component 14 belongs to class 4, not 5"):
        m.sample(5, component=14, label=5)


def test_fake_labels_are_the_gaussians_classes(tmp_path):
    m = digits_model(tmp_path, "gmgan-supervised", **{"prior.components": 20})
    gen = torch.Generator().manual_seed(1)
    eps, k = m.G.prior.draw(64, torch.Generator().manual_seed(1))
    fake = m.fake(64, gen, grad=False)
    assert torch.equal(fake.y, k % 10) and torch.equal(fake.k, k)


# ---- AC-GAN and cGAN ----------------------------------------------------------------------
def test_acgan_class_loss_is_taken_on_logits(tmp_path):
    m = digits_model(tmp_path, "acgan")
    m.D = m.D_train = FirstColumns(1, aux=10)
    x = torch.zeros(2, 1, 8, 8)
    x[:, 0, 0, 1:4] = torch.tensor([60.0, -60.0, 0.0])  # class 0 certain, the requested class 1 ruled out
    x.requires_grad_(True)
    loss = m.generator_loss(Batch(x, y=torch.tensor([1, 1])))
    loss.backward()
    # cross-entropy on logits keeps a full-size gradient where a softmax output would have saturated
    assert loss.item() > 100 and torch.allclose(x.grad.flatten(1)[:, 2], torch.tensor([-0.5, -0.5]), atol=1e-4)


def test_acgan_discriminator_class_head_learns_the_class_of_real_digits(tmp_path):
    """D's share of the class loss: after 150 steps its aux head classifies real test digits
    (78% measured). With the real-image term dropped from ``discriminator_loss`` (monkeypatched)
    the head scored 7%: it learns the class from real data, not from G's samples."""
    run = mixgan.train(small_config(tmp_path, **{"model.name": "acgan", "data.dataset": "digits", "model.width": 16,
                                                 "prior.latent_dim": 16, "train.steps": 150, "train.batch_size": 64,
                                                 "train.checkpoint_every": 150, "train.sample_every": 150}))
    d = run.model.D.eval()
    with torch.no_grad():
        _, cls = d(run.data.images("test"))
    assert (cls.argmax(1) == run.data.y_test).float().mean() > 0.5


class ClassColumn(nn.Module):
    """A stand-in conditional discriminator: the logit of (x, one-hot y) is x's y-th input."""

    def forward(self, x, cond):
        return (x.flatten(1)[:, :cond.shape[1]] * cond).sum(1, keepdim=True)


@pytest.mark.parametrize("loss", ["hinge", "ns"])
def test_cgan_mismatch_scores_each_real_image_with_a_wrong_class_as_a_fake(tmp_path, loss):
    m = digits_model(tmp_path, "cgan", **{"model.mismatch": 1.0, "model.loss": loss})
    m.D = m.D_train = ClassColumn()
    y = torch.arange(10).repeat(2)
    real = leaf(20, torch.zeros(20, 1, 8, 8))
    m.discriminator_loss(Batch(real, y=y), Batch(leaf(20), y=y)).backward()
    g = real.grad.flatten(1)[:, :10]
    rows = torch.arange(20)
    assert (g[rows, y] < 0).all()  # the true pair is pushed up
    wrong = g.clone()
    wrong[rows, y] = 0
    assert ((wrong > 0).sum(1) == 1).all()  # exactly one other class per image, pushed down
    assert len(set(wrong.argmax(1).tolist())) == 10  # the wrong classes vary over the batch


def test_cgan_mismatch_on_a_projection_d_scores_both_pairs_in_one_pass(tmp_path, device):
    m = digits_model(tmp_path, "cgan", device, **{"model.mismatch": 1.0, "model.condition": "auto",
                                                  "model.class_weight": 1.0})
    x, y = torch.randn(12, 1, 8, 8, device=m.device), torch.arange(12, device=m.device) % 10
    true, cls, wrong = m.real_outputs(Batch(x, y=y))
    true2, cls2 = m.D(x, m.one_hot(y))
    wrong2, _ = m.D(x, m.one_hot(wrong_labels(y, 10)))
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in ((true, true2), (cls, cls2), (wrong, wrong2)))


def test_supervised_gmgan_mismatch_pushes_a_wrong_class_of_real_images_down(tmp_path):
    m = digits_model(tmp_path, "gmgan-supervised", **{"prior.components": 20, "model.mismatch": 1.0})
    m.D = m.D_train = FirstColumns(10)
    y = torch.arange(10)
    real = leaf(10)
    m.discriminator_loss(Batch(real, y=y), Batch(leaf(10), y=y)).backward()
    g = real.grad.flatten(1)[:, :10]
    assert (g[y, y] < 0).all() and (g[y, wrong_labels(y, 10)] > 0).all()
    assert ((g != 0).sum(1) == 2).all()


@pytest.mark.parametrize("setting", ["mismatch", "class_weight"])
def test_cgan_fidelity_terms_teach_d_the_class_of_real_digits(tmp_path, setting):
    """Either term makes D a classifier of real images: with ``mismatch`` through argmax_y D(x, y),
    with ``class_weight`` through its class head (150 steps of the image recipe's D: projection, hinge,
    lr 1e-3; chance is 0.1, and argmax_y D(x, y) scored 0.33 without the mismatch term)."""
    run = mixgan.train(small_config(tmp_path, **{"model.name": "cgan", "data.dataset": "digits", "model.width": 16,
                                                 "prior.latent_dim": 16, "train.steps": 150, "train.batch_size": 64,
                                                 "model.condition": "auto", "model.loss": "hinge", "train.lr_d": 1e-3,
                                                 f"model.{setting}": 1.0, "train.checkpoint_every": 150,
                                                 "train.sample_every": 150}))
    d, x = run.model.D.eval(), run.data.images("test")
    with torch.no_grad():
        if setting == "class_weight":
            scores = d(x, run.model.one_hot(torch.zeros(len(x), dtype=torch.long)))[1]
        else:
            scores = torch.cat([d(x, run.model.one_hot(torch.full((len(x),), c))) for c in range(10)], 1)
    assert (scores.argmax(1) == run.data.y_test).float().mean() > 0.5


def test_cgan_fidelity_terms_need_class_labels(tmp_path):
    path = tmp_path / "lin.npz"
    linear_task(path, n=100)
    cfg = small_config(tmp_path, **{"model.name": "cgan", "data.dataset": f"npz:{path}", "model.mismatch": 1.0})
    with pytest.raises(MixganError, match="mismatch need class labels"):
        build_model(cfg, load_dataset(f"npz:{path}").spec())


@pytest.mark.parametrize("name", ["cgan", "acgan", "gmgan-supervised"])
def test_class_conditional_models_refuse_unlabelled_data(tmp_path, name):
    path = tmp_path / "points.npz"
    np.savez(path, x=np.random.default_rng(0).normal(size=(50, 2)).astype(np.float32))
    cfg = small_config(tmp_path, **{"model.name": name, "data.dataset": f"npz:{path}"})
    with pytest.raises(MixganError, match=f"model '{name}' needs class labels"):
        build_model(cfg, load_dataset(f"npz:{path}").spec())


@pytest.mark.parametrize("name, arch, condition", [("cgan", "dcgan", "concat"), ("cgan", "dcgan", "auto"),
                                                   ("cgan", "resnet", "auto"), ("cgan", "cgan-mlp", "auto"),
                                                   ("acgan", "dcgan", "auto")])
def test_label_models_feed_the_class_to_g_and_d(tmp_path, name, arch, condition, device):
    from mixgan.nets.layers import CondBatchNorm

    m = digits_model(tmp_path, name, device, **{"model.arch": arch, "model.condition": condition})
    torch.manual_seed(0)
    for layer in m.G.modules():  # conditional BN starts as the identity (zero gain and shift): give it weights
        if isinstance(layer, CondBatchNorm):
            torch.nn.init.normal_(layer.gain.weight, std=0.5)
    if m.G_ema is not None:
        m.G_ema.load_state_dict(m.G.state_dict())
    m.G.eval()
    eps, k = m.G.prior.draw(4, torch.Generator(m.device).manual_seed(0), device=m.device)
    a, b = (m.G(eps, k, m.one_hot(torch.full((4,), y, device=m.device))) for y in (2, 5))
    assert not torch.allclose(a, b)  # the class reaches G
    s = m.sample(4, label=5, generator=torch.Generator(m.device).manual_seed(0))
    assert torch.equal(s.x, b.float().cpu()) and (s.label == 5).all()
    if name == "cgan":
        m.D.eval()
        x = torch.zeros(4, 1, 8, 8, device=m.device)
        da, db = (m.d_logits(Batch(x, y=torch.full((4,), y, device=m.device))) for y in (2, 5))
        assert not torch.allclose(da, db)  # ... and D


@pytest.mark.parametrize("arch", ["dcgan", "resnet"])
def test_modern_condition_is_conditional_batchnorm_in_g_and_projection_in_d(tmp_path, arch):
    from mixgan.models.cgan import ConcatCondition
    from mixgan.nets.layers import CondBatchNorm

    modern = digits_model(tmp_path, "cgan", **{"model.arch": arch, "model.condition": "auto"})
    assert any(isinstance(layer, CondBatchNorm) for layer in modern.G.net.modules())
    assert not isinstance(modern.D, ConcatCondition) and modern.D.heads.project.in_features == 10
    paper = digits_model(tmp_path, "cgan", **{"model.arch": arch, "model.condition": "concat"})
    assert not any(isinstance(layer, CondBatchNorm) for layer in paper.G.net.modules())
    assert isinstance(paper.D, ConcatCondition)
    acgan = digits_model(tmp_path, "acgan", **{"model.arch": arch, "model.condition": "auto"})
    assert not any(isinstance(layer, CondBatchNorm) for layer in acgan.G.net.modules())  # measured worse
    with pytest.raises(MixganError, match="condition must be"):
        digits_model(tmp_path, "cgan", **{"model.condition": "film"})


def test_cgan_mlp_is_the_papers_network(tmp_path):
    m = digits_model(tmp_path, "cgan", **{"model.arch": "cgan-mlp", "prior.latent_dim": 100})
    g, d = m.G.net, m.D
    assert [l.out_features for l in (g.z_branch[0], g.y_branch[0], g.joint[0])] == [200, 1000, 1200]
    assert (g.y_branch[0].in_features, g.joint[0].in_features) == (10, 1200)
    assert [(b[0].units, b[0].pieces) for b in (d.x_branch, d.y_branch, d.joint)] == [(240, 5), (50, 5), (240, 4)]
    assert all(isinstance(b[-1], nn.Dropout) and b[-1].p == 0.5 for b in (d.x_branch, d.y_branch, d.joint))


# ---- npz data and vector conditions -------------------------------------------------------
def test_npz_dataset_reads_conditions_labels_and_images(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(path, x=rng.normal(size=(100, 3)).astype(np.float32), c=rng.normal(size=(100, 2)), y=np.arange(100) % 4)
    d = load_dataset(f"npz:{path}", test_fraction=0.2)
    assert (len(d.x_train), len(d.x_test), d.kind, d.num_classes) == (80, 20, "points", 4)
    assert d.spec().cond_dim == 2 and d.cond_train.shape == (80, 2) and d.cond_test.dtype == torch.float32
    x = np.concatenate([d.x_train.numpy(), d.x_test.numpy()])
    assert sorted(map(tuple, x.round(5))) == sorted(map(tuple, np.load(path)["x"].round(5)))  # a split, no loss
    np.savez(path, x=np.full((10, 8, 8), 255, np.uint8), x_test=np.zeros((4, 8, 8), np.uint8))
    d = load_dataset(f"npz:{path}")
    assert d.shape == (1, 8, 8) and d.kind == "image" and d.images().max() == 1 and d.images("test").min() == -1


def test_cgan_is_the_label_or_the_vector_model_by_the_data_and_declares_what_it_takes(tmp_path):
    from mixgan.models.cgan import CGAN, VectorCGAN

    rng = np.random.default_rng(0)
    path = tmp_path / "v.npz"
    np.savez(path, x=rng.normal(size=(40, 2)).astype(np.float32), c=rng.normal(size=(40, 3)))
    vector = build_model(small_config(tmp_path, **{"model.name": "cgan", "data.dataset": f"npz:{path}"}),
                         load_dataset(f"npz:{path}").spec())
    labels = build_model(small_config(tmp_path, **{"model.name": "cgan", "data.dataset": "ring"}),
                         load_dataset("ring").spec())
    assert type(vector) is VectorCGAN and type(labels) is CGAN and vector.name == labels.name == "cgan"
    assert (vector.accepts_condition_vectors, vector.class_conditional) == (True, False)
    assert (labels.accepts_condition_vectors, labels.class_conditional) == (False, True)
    assert not (vector.has_components or vector.instance_conditional or labels.has_components)


@pytest.mark.parametrize("arrays, message", [
    ({"c": np.zeros((5, 2))}, "no array 'x'"),
    ({"x": np.zeros((5, 2)), "c": np.zeros((4, 2))}, "c must be N x cond_dim with N = 5 rows"),
    ({"x": np.array([[1.0, np.nan]] * 3)}, "x contains NaN"),
    ({"x": np.zeros((5, 2)), "y": np.array([0.5] * 5)}, "y must be 5 integer labels"),
    ({"x": np.array([None] * 5, dtype=object)}, "unreadable array"),
    ({"x": np.full((3, 1, 8, 8), 2.0)}, "float images must lie in"),
])
def test_npz_dataset_refuses_bad_files_in_one_line(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(MixganError, match=message) as info:
        load_dataset(f"npz:{path}")
    assert "\n" not in str(info.value)


def linear_task(path, n=20000, seed=0):
    """x = A c + b + diag(s) eps: the true p(x | c) is N(A c + b, diag(s^2))."""
    rng = np.random.default_rng(seed)
    a, b, s = np.array([[1.0, 0.5], [-0.5, 1.0]]), np.array([0.5, -0.5]), np.array([0.3, 0.1])
    c = rng.uniform(-1, 1, (n, 2))
    x = c @ a.T + b + s * rng.standard_normal((n, 2))
    np.savez(path, x=x.astype(np.float32), c=c.astype(np.float32))
    return a, b, s


def test_vector_cgan_learns_the_conditional_mean_and_spread(tmp_path, cli):
    a, b, spread = linear_task(tmp_path / "lin.npz")
    cfg = small_config(tmp_path, **{"model.name": "cgan", "data.dataset": f"npz:{tmp_path / 'lin.npz'}",
                                    "model.width": 64, "prior.latent_dim": 2, "train.batch_size": 128,
                                    "train.d_steps": 2,
                                    "train.lr_g": 1e-3, "train.lr_d": 1e-3, "train.ema": True,
                                    "train.ema_decay": 0.99, "train.steps": VECTOR_STEPS,
                                    "train.sample_every": VECTOR_STEPS, "train.checkpoint_every": VECTOR_STEPS})
    run = mixgan.train(cfg)
    conds = np.array([[-0.8, 0.0], [0.0, 0.0], [0.8, -0.8], [0.8, 0.8]], np.float32)
    np.savez(tmp_path / "c.npz", c=np.repeat(conds, 1000, 0))
    code, out, err = cli("sample", run.path, "--cond", tmp_path / "c.npz", "--out", tmp_path / "s.npz")
    assert code == 0, err
    s = np.load(tmp_path / "s.npz")
    assert s["x"].shape == (4000, 2) and np.array_equal(s["cond"], np.repeat(conds, 1000, 0))
    for i, c in enumerate(conds):
        x = s["x"][i * 1000:(i + 1) * 1000]
        assert np.abs(x.mean(0) - (a @ c + b)).max() < MEAN_TOL, (c, x.mean(0))
        ratio = x.std(0) / spread
        assert ((ratio > SPREAD_RANGE[0]) & (ratio < SPREAD_RANGE[1])).all(), (c, x.std(0))
    # without conditions, they are drawn from the training set: p(x) = mean_i p(x | c_i)
    free = run.sample(2000, seed=3)
    assert free.cond.shape == (2000, 2) and np.abs(free.cond.numpy()).max() <= 1
    code, _, err = cli("sample", run.path, "--class", 1, "--n", 5, "--out", tmp_path / "t.npz")
    assert code == 2 and "not class-conditional" in err
    with pytest.raises(MixganError, match="conditions must have 2 columns"):
        run.sample(3, cond=np.zeros((3, 5)))


# Measured: means within 0.03; spread 0.6-1.0x the true one along x1 and 0.4-0.6x along the
# narrow x2 (GANs under-disperse). The bounds still fail a G that ignores z (spread -> 0) or c
# (mean off by up to 1.7, spread 2-6x).
VECTOR_STEPS, MEAN_TOL, SPREAD_RANGE = 600, 0.1, (0.3, 1.6)


# ---- trained on digits: the class is obeyed -----------------------------------------------
# docs/conditional.md's K = N recipe at width 32 (0.976 measured; 0.986 at the table's width 64)
DIGITS_RUN = {"model.name": "gmgan-supervised", "data.dataset": "digits", "prior.components": 10,
              "prior.sigma": 0.5, "train.ema": True, "train.ema_decay": 0.99, "train.steps": 800,
              "train.batch_size": 64, "train.log_every": 100, "train.sample_every": 800,
              "train.checkpoint_every": 800, "model.width": 32}


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("digits") / "run"
    return mixgan.train(mixgan.build_config({**DIGITS_RUN, "out": str(path)}))


def class_hits(run) -> list[float]:
    """Per class y: the share of 100 samples of class y that the reference classifier calls y."""
    from mixgan.metrics.classifier import get_classifier

    clf = get_classifier(run.data)
    return [(clf.probs(run.sample(100, label=y, seed=y).x).argmax(1) == y).float().mean().item() for y in range(10)]


def test_digits_samples_are_classified_as_the_requested_class(digits_run):
    hits = class_hits(digits_run)
    assert np.mean(hits) >= 0.95, hits


@pytest.mark.slow
@pytest.mark.fashion
def test_fashion_samples_are_mostly_classified_as_the_requested_class(tmp_path):
    """docs/conditional.md's lower bar at a test's budget: K = N, width 16, 400 steps (seed 0)
    measured 0.774 (T-shirt 0.15 and pullover 0.00 the lowest classes); the 95% target needs about
    3,000 steps at width 64. Measured with the image recipe of that time, which it pins."""
    run = mixgan.train(mixgan.build_config({**PREVIOUS_IMAGE_RECIPE, **DIGITS_RUN, "data.dataset": "fashion-mnist",
                                            "model.width": 16,
                                            "train.steps": 400, "train.sample_every": 400,
                                            "train.checkpoint_every": 400, "out": str(tmp_path / "run")}))
    hits = class_hits(run)
    assert np.mean(hits) >= 0.7, hits


def test_sample_cli_class_and_grid_rows(digits_run, tmp_path, cli, device):
    code, out, err = cli("sample", digits_run.path, "--class", 7, "--n", 30, "--out", tmp_path / "a.npz",
                         "--device", device)
    assert code == 0, err
    s = np.load(tmp_path / "a.npz")
    assert s["x"].shape == (30, 1, 8, 8) and (s["label"] == 7).all() and (s["component"] % 10 == 7).all()
    code, out, err = cli("sample", digits_run.path, "--n", 300, "--out", tmp_path / "b.npz", "--grid", tmp_path / "b.png",
                         "--device", device)
    assert code == 0, err
    assert sorted(np.unique(np.load(tmp_path / "b.npz")["label"])) == list(range(10))
    row_px = (8 + 1) * 8  # 8 px images, 1 px padding, enlarged 8 times
    assert Image.open(tmp_path / "b.png").height == 10 * row_px + 8  # one row per class
    progress = sorted((digits_run.path / "samples").glob("*.png"))[-1]
    assert Image.open(progress).height == 10 * row_px + 8
    np.savez(tmp_path / "c.npz", c=np.zeros((3, 2), np.float32))
    code, _, err = cli("sample", digits_run.path, "--cond", tmp_path / "c.npz", "--out", tmp_path / "d.npz")
    assert code == 2 and "does not take vector conditions" in err
    (tmp_path / "cut.npz").write_bytes((tmp_path / "c.npz").read_bytes()[:100])
    code, _, err = cli("sample", digits_run.path, "--cond", tmp_path / "cut.npz", "--out", tmp_path / "d.npz")
    assert code == 2 and "not a .npz file" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("name, extra", [("gmgan-supervised", {"prior.components": 20}), ("acgan", {}),
                                         ("cgan", {"model.arch": "cgan-mlp"}), ("cgan", {"vector": True}),
                                         ("cgan", {"model.class_weight": 0.5, "model.mismatch": 1.0})])
def test_resume_repeats_the_uninterrupted_run(tmp_path, name, extra):
    from safetensors.torch import load_file

    from mixgan.training.checkpoint import list_checkpoints

    values = {"model.name": name, "data.dataset": "digits", "model.width": 8, "prior.latent_dim": 8,
              "train.steps": 6, "train.log_every": 3, "train.sample_every": 6, "train.checkpoint_every": 3, **extra}
    if values.pop("vector", False):
        linear_task(tmp_path / "lin.npz", n=300)
        values["data.dataset"] = f"npz:{tmp_path / 'lin.npz'}"
    full = mixgan.train(small_config(tmp_path / "a", **values))
    half = small_config(tmp_path / "b", **{**values, "train.steps": 3})
    mixgan.train(half)
    half.train.steps = 6
    resumed = mixgan.train(half, resume=True)
    wa, wb = (load_file(str(list_checkpoints(r.path / "checkpoints")[-1].with_suffix(".safetensors")))
              for r in (full, resumed))
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    a, b = full.sample(20, seed=4), resumed.sample(20, seed=4)
    assert torch.equal(a.x, b.x) and all(torch.equal(getattr(a, f), getattr(b, f)) for f in ("label", "cond")
                                         if getattr(a, f) is not None)


def test_a_run_made_before_model_condition_existed_still_loads(tmp_path, cli):
    """Runs whose resolved config.toml predates ``model.condition`` were trained with concatenation:
    they load as such; the same checkpoint under today's default is one clear line, not a traceback."""
    cfg = small_config(tmp_path, **{"model.name": "cgan", "data.dataset": "digits", "model.width": 8,
                                    "prior.latent_dim": 8, "model.condition": "concat", "train.steps": 2,
                                    "train.checkpoint_every": 2})
    run = mixgan.train(cfg)
    toml = run.path / "config.toml"
    old = ("condition", "version")  # a version-1 file: no version line, no condition
    toml.write_text("\n".join(line for line in toml.read_text().splitlines() if not line.startswith(old)))
    assert mixgan.load(run.path).cfg.model.condition == "concat"
    toml.write_text(toml.read_text().replace("[model]", '[model]\ncondition = "auto"'))
    code, _, err = cli("sample", run.path, "--n", 4, "--out", tmp_path / "s.npz")
    assert code == 2 and "model.condition" in err and len(err.strip().splitlines()) == 1


def test_a_run_made_before_model_mismatch_existed_loads_with_it_off(tmp_path):
    """The image preset turns the matching-aware D on; a resolved config.toml without the key was
    trained without it, and loads that way."""
    assert mixgan.build_config({"model.name": "cgan", "data.dataset": "fashion-mnist"}).model.mismatch == 1.0
    assert mixgan.build_config({"model.name": "cgan", "data.dataset": "digits"}).model.mismatch == 0.0
    run = mixgan.train(small_config(tmp_path, **{"model.name": "cgan", "data.dataset": "digits", "model.width": 8,
                                                 "prior.latent_dim": 8, "model.mismatch": 1.0, "train.steps": 2,
                                                 "train.checkpoint_every": 2}))
    toml = run.path / "config.toml"
    assert mixgan.load(run.path).cfg.model.mismatch == 1.0
    old = ("mismatch", "version")  # a version-1 file: no version line, no mismatch
    toml.write_text("\n".join(line for line in toml.read_text().splitlines() if not line.startswith(old)))
    assert mixgan.load(run.path).cfg.model.mismatch == 0.0
