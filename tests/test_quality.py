"""The image recipe: residual bodies, differentiable augmentation, R1, the wall-clock budget."""
import json

import pytest
import torch

import mixgan
from mixgan.errors import MixganError
from mixgan.models import build_model
from mixgan.nets import build_discriminator, build_generator
from mixgan.nets.augment import DiffAugment, attach_augment, cutout, translate
from mixgan.training.loop import model_states, restore

from conftest import small_config


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32), (3, 64, 64)])
@pytest.mark.parametrize("cond_dim, mode", [(0, "concat"), (6, "cbn"), (6, "concat")])
def test_resnet_bodies_make_images_and_logits_of_the_right_shape(shape, cond_dim, mode):
    G = build_generator("resnet", 8, shape, 4, cond_dim, mode)
    D = build_discriminator("resnet", shape, 4, out_dim=3, cond_dim=cond_dim, aux_classes=5, spectral_norm=True)
    cond = torch.randn(2, cond_dim) if cond_dim else None
    x = G(torch.randn(2, 8), cond)
    assert x.shape == (2, *shape) and x.abs().max() <= 1
    logits, aux = D(x, cond)
    assert logits.shape == (2, 3) and aux.shape == (2, 5)


def test_resnet_generator_takes_the_condition_through_conditional_batch_norm():
    G = build_generator("resnet", 8, (1, 28, 28), 4, 6, "cbn")
    assert any(type(m).__name__ == "CondBatchNorm" for m in G.modules())
    assert G.fc.in_features == 8


def test_resnet_refuses_vectors_and_odd_sizes_in_one_line():
    with pytest.raises(MixganError, match="needs images"):
        build_generator("resnet", 8, (10,), 4)
    with pytest.raises(MixganError, match="s0 \\* 2\\^n"):
        build_discriminator("resnet", (1, 7, 7), 4)


def test_augmentation_is_reproducible_under_a_seed_and_differs_across_seeds():
    x = torch.randn(16, 3, 32, 32)
    aug = DiffAugment("translation,cutout")
    torch.manual_seed(3)
    a = aug(x)
    torch.manual_seed(3)
    b = aug(x)
    torch.manual_seed(4)
    c = aug(x)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a, x)


def test_augmentation_passes_gradients_to_the_pixels_it_keeps():
    x = torch.randn(8, 1, 28, 28, requires_grad=True)
    torch.manual_seed(0)
    out = DiffAugment("translation,cutout")(x)
    out.sum().backward()
    kept = (x.grad != 0).float().mean()
    assert 0.5 < kept < 1  # cutout drops a quarter of the image, translation a border


def test_translation_moves_an_image_by_whole_pixels_and_fills_zeros():
    x = torch.zeros(64, 1, 8, 8)
    x[:, :, 4, 4] = 1
    torch.manual_seed(0)
    y = translate(x, ratio=0.25)  # up to 2 px each way
    rows, cols = torch.nonzero(y[:, 0], as_tuple=True)[1:]
    assert y.sum(dim=(1, 2, 3)).eq(1).all()  # the pixel moves, it does not blur or vanish
    assert rows.min() >= 2 and rows.max() <= 6 and cols.min() >= 2 and cols.max() <= 6
    assert len(set(zip(rows.tolist(), cols.tolist()))) > 10


def test_cutout_zeroes_one_square_of_half_the_side():
    torch.manual_seed(0)
    y = cutout(torch.ones(32, 1, 16, 16), ratio=0.5)
    zeros = (y == 0).sum(dim=(1, 2, 3))
    assert zeros.max() == 64 and zeros.min() >= 16  # an 8x8 square, clipped at the border


def test_augment_hook_applies_in_training_only_and_keeps_the_state_dict():
    d = torch.nn.Conv2d(1, 1, 1, bias=False)
    torch.nn.init.ones_(d.weight)
    keys = set(d.state_dict())
    attach_augment(d, "cutout")
    x = torch.ones(4, 1, 8, 8)
    assert (d(x) == 0).any()
    d.eval()
    assert torch.equal(d(x), x)
    assert set(d.state_dict()) == keys


def test_bad_augment_policy_is_one_line():
    with pytest.raises(MixganError, match="augment must be a comma list of color, translation, cutout, got 'flip'"):
        mixgan.build_config({"train.augment": "translation,flip"})
    with pytest.raises(MixganError, match="max_seconds must be >= 0"):
        mixgan.build_config({"train.max_seconds": -1})
    with pytest.raises(MixganError, match="r1 must be >= 0"):
        mixgan.build_config({"train.r1": -1})


IMAGE_SMALL = {"data.dataset": "digits", "encoder.enabled": False, "model.width": 8, "prior.latent_dim": 8,
               "prior.components": 10}


@pytest.mark.parametrize("name", ["gan", "gmgan", "gmgan-supervised", "cgan", "acgan"])
def test_recipe_trains_every_model_on_images(tmp_path, name):
    """Hinge, augmentation, R1 and d_steps together, through each model's own D outputs."""
    from mixgan.data import load_dataset

    data = load_dataset("digits")
    cfg = small_config(tmp_path, **IMAGE_SMALL, **{
        "model.name": name, "model.arch": "resnet", "model.loss": "hinge", "model.spectral_norm": True,
        "train.augment": "translation,cutout", "train.r1": 1.0, "train.d_steps": 2})
    model = build_model(cfg, data.spec())
    model.attach_data(data)
    before = [p.detach().clone() for p in model.D.parameters()]
    gen = torch.Generator().manual_seed(0)
    logs = model.train_step(lambda: model.batch(torch.arange(32)), gen)
    assert all(torch.isfinite(torch.as_tensor(v)) for v in logs.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.D.parameters()))


def test_max_seconds_ends_with_a_checkpoint_and_a_grid(tmp_path):
    cfg = small_config(tmp_path, **IMAGE_SMALL, **{"model.arch": "resnet", "train.steps": 10 ** 6,
                                                   "train.max_seconds": 0.5, "train.checkpoint_every": 10 ** 5})
    run = mixgan.train(cfg)
    last = json.loads((run.path / "stats.jsonl").read_text().splitlines()[-1])["step"]
    assert 0 < last < 10 ** 6
    assert mixgan.load(run.path).step == last
    assert (run.path / "samples" / f"step-{last:06d}.png").exists()


def test_old_network_checkpoint_into_the_resnet_is_one_clear_error(tmp_path):
    from mixgan.data import load_dataset

    spec = load_dataset("digits").spec()
    old = build_model(small_config(tmp_path / "a", **IMAGE_SMALL, **{"model.arch": "dcgan"}), spec)
    new = build_model(small_config(tmp_path / "b", **IMAGE_SMALL, **{"model.arch": "resnet"}), spec)
    with pytest.raises(MixganError, match="model.arch") as err:
        restore(new, model_states(old), {"model": "gmgan"})
    assert "\n" not in str(err.value)


def test_r1_penalty_is_half_gamma_times_the_squared_input_gradient(tmp_path):
    from mixgan.data import load_dataset

    data = load_dataset("digits")
    model = build_model(small_config(tmp_path, **IMAGE_SMALL, **{"model.name": "acgan", "train.r1": 4.0}), data.spec())
    model.attach_data(data)
    w = torch.randn(64)
    model.d_logits = lambda b, train=True: ((b.x.flatten(1) * w).sum(1, keepdim=True), None)  # AC-GAN's tuple
    penalty = model.r1_penalty(model.batch(torch.arange(8)))
    assert torch.allclose(penalty, 4.0 / 2 * w.pow(2).sum())


def spectral_norms(module: torch.nn.Module) -> list[torch.nn.Module]:
    return [m.parametrizations.weight[0] for m in module.modules() if hasattr(m, "parametrizations")]


def test_spectral_norm_is_computed_once_per_discriminator_update(tmp_path):
    """D is called on real and fake images in its update and once in G's: with d_steps = 2 each
    spectral norm runs three times a step, not five."""
    from mixgan.data import load_dataset

    data = load_dataset("digits")
    model = build_model(small_config(tmp_path, **IMAGE_SMALL, **{"model.name": "gan", "model.spectral_norm": True,
                                                                 "train.d_steps": 2}), data.spec())
    model.attach_data(data)
    norms = spectral_norms(model.D)
    calls = []
    for sn in norms:
        sn.register_forward_hook(lambda *_: calls.append(1))
    model.train_step(lambda: model.batch(torch.arange(32)), torch.Generator().manual_seed(0))
    assert norms and len(calls) == 3 * len(norms)


@pytest.mark.parametrize("name", ["gan", "gmgan-supervised", "acgan"])
def test_cached_spectral_norm_gives_d_the_gradient_of_every_call(tmp_path, monkeypatch, name):
    """Without the power iteration (which the cache runs once instead of per call) D's update is
    the same with the cache as without it: real, fake and R1 terms all reach D's weights."""
    import contextlib

    from mixgan.data import load_dataset
    from mixgan.models import base

    data = load_dataset("digits")
    cfg = small_config(tmp_path, **IMAGE_SMALL, **{"model.name": name, "model.spectral_norm": True, "train.r1": 1.0})
    updated = []
    for cached in (True, False):
        torch.manual_seed(0)
        model = build_model(cfg, data.spec())
        model.attach_data(data)
        for sn in spectral_norms(model.D):
            sn.n_power_iterations = 0
        if not cached:
            monkeypatch.setattr(base.parametrize, "cached", contextlib.nullcontext)
        model.discriminator_steps(lambda: model.batch(torch.arange(32)), torch.Generator().manual_seed(0))
        updated.append([p.detach().clone() for p in model.D.parameters()])
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(*updated))
    torch.manual_seed(0)
    initial = build_model(cfg, data.spec()).D.parameters()
    assert any(not torch.equal(a, b) for a, b in zip(updated[0], initial))
