"""Pure metric functions against closed forms and brute force."""
import importlib
import math

import numpy as np
import pytest
import scipy.linalg
import torch

from mixgan.errors import MixganError
from mixgan.metrics import (conditional_accuracy, fid, frechet_distance, inception_score, inter_diversity,
                            intra_fid, knn_radii, ms_ssim, msssim_setting, prdc, quality_diversity, quality_score)


def random_spd(d, gen):
    a = torch.randn(d, d, generator=gen, dtype=torch.float64)
    return a @ a.T / d + 0.1 * torch.eye(d, dtype=torch.float64)


def scipy_frechet(mu1, s1, mu2, s2):
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def test_frechet_distance_matches_closed_form_for_non_commuting_covariances():
    gen = torch.Generator().manual_seed(0)
    d = 6
    mu1, mu2 = torch.randn(d, generator=gen, dtype=torch.float64), torch.randn(d, generator=gen, dtype=torch.float64)
    s1, s2 = random_spd(d, gen), random_spd(d, gen)
    expected = scipy_frechet(mu1.numpy(), s1.numpy(), mu2.numpy(), s2.numpy())
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)
    # diagonal case by hand: |mu1-mu2|^2 + sum (sqrt a - sqrt b)^2
    a, b = torch.tensor([1.0, 4.0, 9.0]), torch.tensor([4.0, 1.0, 9.0])
    got = frechet_distance(torch.zeros(3), torch.diag(a), torch.tensor([3.0, 0, 0]), torch.diag(b))
    assert got == pytest.approx(9 + 1 + 1, abs=1e-9)


def test_fid_of_gaussian_samples_approaches_the_frechet_distance_of_the_populations():
    gen = torch.Generator().manual_seed(1)
    d, n = 4, 40_000
    mu1, mu2 = torch.zeros(d, dtype=torch.float64), torch.full((d,), 0.5, dtype=torch.float64)
    s1, s2 = random_spd(d, gen), random_spd(d, gen)
    x1 = mu1 + torch.randn(n, d, generator=gen, dtype=torch.float64) @ torch.linalg.cholesky(s1).T
    x2 = mu2 + torch.randn(n, d, generator=gen, dtype=torch.float64) @ torch.linalg.cholesky(s2).T
    expected = scipy_frechet(mu1.numpy(), s1.numpy(), mu2.numpy(), s2.numpy())
    assert fid(x1, x2) == pytest.approx(expected, rel=0.05)
    assert fid(x1, x2) == pytest.approx(fid(x2, x1), rel=1e-9)


def test_fid_of_a_set_against_itself_is_zero_even_with_singular_covariance():
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(500, 16, generator=gen)
    assert fid(x, x) < 1e-6
    few = torch.randn(10, 64, generator=gen)  # rank 9 covariance in 64-d
    assert abs(fid(few, few)) < 1e-6
    assert math.isfinite(fid(few, torch.randn(12, 64, generator=gen)))
    assert fid(x, x + 1.0) == pytest.approx(16.0, rel=1e-6)  # a shift by 1 in 16 dims


def test_fid_rejects_mismatched_features():
    with pytest.raises(MixganError, match="feature statistics"):
        fid(torch.randn(10, 3), torch.randn(10, 4))
    with pytest.raises(MixganError, match="at least 2"):
        fid(torch.randn(1, 3), torch.randn(10, 3))


@pytest.mark.parametrize("n_classes", [1, 2, 10])
def test_inception_score_of_one_hot_classes(n_classes):
    probs = torch.eye(n_classes).repeat(50, 1)  # every class used equally, within every split
    mean, std = inception_score(probs, splits=5)
    assert mean == pytest.approx(n_classes, rel=1e-9)
    assert std == pytest.approx(0.0, abs=1e-9)


def test_inception_score_of_uninformative_predictions_is_one_and_skew_lowers_it():
    assert inception_score(torch.full((100, 10), 0.1), splits=1)[0] == pytest.approx(1.0)
    skewed = torch.eye(4)[torch.tensor([0] * 70 + [1] * 10 + [2] * 10 + [3] * 10)]
    assert 1.0 < inception_score(skewed, splits=1)[0] < 4.0
    with pytest.raises(MixganError, match="splits"):
        inception_score(torch.eye(3), splits=4)


def brute_prdc(real, fake, k):
    real, fake = real.numpy().astype(np.float64), fake.numpy().astype(np.float64)
    drr = np.linalg.norm(real[:, None] - real[None], axis=2)
    dff = np.linalg.norm(fake[:, None] - fake[None], axis=2)
    drf = np.linalg.norm(real[:, None] - fake[None], axis=2)
    r_real = np.sort(drr, axis=1)[:, k]
    r_fake = np.sort(dff, axis=1)[:, k]
    return {"precision": (drf < r_real[:, None]).any(0).mean(), "recall": (drf < r_fake[None]).any(1).mean(),
            "density": (drf < r_real[:, None]).sum(0).mean() / k,
            "coverage": (drf.min(1) < r_real).mean()}, r_real


@pytest.mark.parametrize("k, chunk", [(1, 7), (3, 1024), (5, 16)])
def test_prdc_matches_brute_force(k, chunk):
    gen = torch.Generator().manual_seed(k)
    real = torch.randn(80, 5, generator=gen, dtype=torch.float64)
    fake = 0.7 * torch.randn(60, 5, generator=gen, dtype=torch.float64) + 0.4
    got = prdc(real, fake, k=k, chunk=chunk)
    want, r_real = brute_prdc(real, fake, k)
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-12), key
    assert torch.allclose(knn_radii(real, k, chunk), torch.from_numpy(r_real))
    # the fake set is a shrunk copy: neither trivially 0 nor 1
    assert 0 < got["recall"] < 1


def test_prdc_of_identical_sets_and_disjoint_sets():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(200, 4, generator=gen)
    same = prdc(x, x.clone(), k=5)
    assert same["precision"] == 1 and same["recall"] == 1 and same["coverage"] == 1
    far = prdc(x, x + 100, k=5)
    assert far == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


def test_nearest_neighbour_work_never_builds_an_n_by_n_matrix(monkeypatch):
    shapes = []
    real_cdist = torch.cdist

    def spy(a, b, *args, **kwargs):
        shapes.append((a.shape[0], b.shape[0]))
        return real_cdist(a, b, *args, **kwargs)

    monkeypatch.setattr(importlib.import_module("mixgan.metrics.prdc").torch, "cdist", spy)
    gen = torch.Generator().manual_seed(4)
    prdc(torch.randn(300, 3, generator=gen), torch.randn(250, 3, generator=gen), k=3, chunk=64)
    assert shapes and max(rows for rows, _ in shapes) <= 64


def test_ms_ssim_is_one_for_identical_images_and_drops_with_noise():
    gen = torch.Generator().manual_seed(5)
    for shape in [(1, 8, 8), (1, 28, 28), (3, 32, 32)]:
        x = torch.rand(6, *shape, generator=gen) * 2 - 1
        assert torch.allclose(ms_ssim(x, x), torch.ones(6), atol=1e-6)
        slightly = (x + 0.05 * torch.randn(x.shape, generator=gen)).clamp(-1, 1)
        heavily = (x + 0.8 * torch.randn(x.shape, generator=gen)).clamp(-1, 1)
        a, b = ms_ssim(x, slightly), ms_ssim(x, heavily)
        assert (a < 1).all() and (b < a).all()
        assert torch.allclose(ms_ssim(x, heavily), ms_ssim(heavily, x), atol=1e-6)
    assert ms_ssim(torch.ones(2, 1, 28, 28), -torch.ones(2, 1, 28, 28)).max() < 0.01


def reference_ms_ssim(x, y, win, sigma, scales, data_range=2.0):
    """MS-SSIM of two C x H x W numpy images from Wang, Simoncelli & Bovik (2003), written out with a
    loop over window positions: Gaussian-weighted means, variances and covariance at each position;
    contrast-structure (2 s_xy + C2) / (s_x^2 + s_y^2 + C2) averaged at every scale, luminance times
    contrast-structure at the coarsest; scales made by 2x2 averaging; negative terms count as 0."""
    weights = np.array([0.0448, 0.2856, 0.3001, 0.2363, 0.1333][:scales])
    weights /= weights.sum()
    g = np.exp(-((np.arange(win) - (win - 1) / 2) ** 2) / (2 * sigma ** 2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    value = 1.0
    for j in range(scales):
        cs, ssim = [], []
        for ch in range(x.shape[0]):
            for r in range(x.shape[1] - win + 1):
                for c in range(x.shape[2] - win + 1):
                    a, b = x[ch, r:r + win, c:c + win], y[ch, r:r + win, c:c + win]
                    ma, mb = (w * a).sum(), (w * b).sum()
                    va, vb, cov = (w * (a - ma) ** 2).sum(), (w * (b - mb) ** 2).sum(), (w * (a - ma) * (b - mb)).sum()
                    cs.append((2 * cov + c2) / (va + vb + c2))
                    ssim.append(cs[-1] * (2 * ma * mb + c1) / (ma ** 2 + mb ** 2 + c1))
        value *= max(np.mean(ssim if j == scales - 1 else cs), 0.0) ** weights[j]
        h, wd = x.shape[1] // 2 * 2, x.shape[2] // 2 * 2
        x, y = (t[:, :h, :wd].reshape(t.shape[0], h // 2, 2, wd // 2, 2).mean((2, 4)) for t in (x, y))
    return value


@pytest.mark.parametrize("shape, win, sigma, scales", [((1, 28, 28), 7, 1.5, 3), ((3, 32, 32), 7, 1.5, 3),
                                                       ((1, 8, 8), 3, 1.0, 2)])
def test_ms_ssim_equals_an_independent_implementation_of_the_definition(shape, win, sigma, scales):
    """The window, sigma and scale count are the documented small-image setting (metrics/msssim.py)."""
    gen = torch.Generator().manual_seed(8)
    x = torch.rand(3, *shape, generator=gen, dtype=torch.float64) * 2 - 1
    y = (0.6 * x + 0.5 * torch.rand(3, *shape, generator=gen, dtype=torch.float64) - 0.1).clamp(-1, 1)
    y[2] = -x[2]  # anti-correlated: the contrast-structure term is clamped at 0
    got = ms_ssim(x, y)
    want = [reference_ms_ssim(a.numpy(), b.numpy(), win, sigma, scales) for a, b in zip(x, y)]
    assert 0.05 < want[0] < 0.95 and want[2] == 0
    assert got.tolist() == pytest.approx(want, abs=1e-6)


@pytest.mark.parametrize("a, b", [(0.6, 0.2), (-0.3, 0.9), (0.5, 0.5)])
def test_ms_ssim_of_constant_images_is_the_luminance_term(a, b):
    """Flat images have no contrast: every contrast-structure term is C2 / C2 = 1, so MS-SSIM is
    the luminance (2ab + C1) / (a^2 + b^2 + C1) to the coarsest scale's weight (3 scales at 28x28),
    or 0 where the luminance term is negative."""
    c1 = (0.01 * 2) ** 2
    weight = 0.3001 / (0.0448 + 0.2856 + 0.3001)
    want = max((2 * a * b + c1) / (a * a + b * b + c1), 0.0) ** weight
    got = ms_ssim(torch.full((1, 1, 28, 28), a), torch.full((1, 1, 28, 28), b))
    assert float(got) == pytest.approx(want, abs=1e-6)


def test_ms_ssim_scales_are_limited_for_small_images():
    assert msssim_setting(28, 28)[0] == 7 and len(msssim_setting(28, 28)[2]) == 3
    assert msssim_setting(8, 8)[0] == 3 and len(msssim_setting(8, 8)[2]) == 2
    assert len(msssim_setting(256, 256)[2]) == 5
    assert sum(msssim_setting(32, 32)[2]) == pytest.approx(1.0)
    with pytest.raises(MixganError, match="at least"):
        ms_ssim(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2))


def test_quality_and_diversity_scores():
    gen = torch.Generator().manual_seed(6)
    imgs = torch.rand(40, 1, 28, 28, generator=gen) * 2 - 1
    balanced = torch.eye(4).repeat(10, 1)
    assert quality_score(balanced) == 1.0
    assert quality_score(torch.full((10, 4), 0.25)) == pytest.approx(0.25)
    assert inter_diversity(balanced) == pytest.approx(1.0)
    assert inter_diversity(torch.eye(4)[torch.zeros(40, dtype=torch.long)]) == pytest.approx(0.0)
    varied = quality_diversity(imgs, balanced, pairs=200)
    assert varied["diversity_intra"] > 0.5
    assert varied["diversity"] == pytest.approx(math.sqrt(varied["diversity_intra"]))
    copies = quality_diversity(imgs[:1].repeat(40, 1, 1, 1), balanced, pairs=200)
    assert copies["diversity_intra"] == pytest.approx(0.0, abs=1e-6) and copies["diversity"] < 1e-3


def test_intra_fid_and_conditional_accuracy():
    gen = torch.Generator().manual_seed(7)
    labels = torch.arange(3).repeat_interleave(200)
    feats = torch.randn(600, 4, generator=gen) + labels[:, None] * 3.0
    assert intra_fid(feats, labels, feats, labels) < 1e-6
    # samples of the right overall distribution but the wrong class: plain FID ~0, intra-FID large
    wrong = (labels + 1) % 3
    assert fid(feats, feats) < 1e-6 and intra_fid(feats, wrong, feats, labels) > 10
    probs = torch.eye(3)[labels]
    assert conditional_accuracy(probs, labels) == 1.0
    assert conditional_accuracy(probs, wrong) == 0.0
    with pytest.raises(MixganError, match="no class"):
        intra_fid(feats[:1], labels[:1], feats, labels)


def test_within_class_pairs_see_a_collapse_that_random_pairs_miss():
    from mixgan.metrics.msssim import mean_pairwise_msssim
    from mixgan.metrics.quality_diversity import quality_diversity

    gen = torch.Generator().manual_seed(0)
    modes = torch.rand(2, 1, 28, 28, generator=gen) * 2 - 1
    collapsed = modes.repeat_interleave(30, 0)  # 2 classes, each one image repeated
    classes = torch.arange(2).repeat_interleave(30)
    assert mean_pairwise_msssim(collapsed, 300, groups=classes) == pytest.approx(1.0)
    assert mean_pairwise_msssim(collapsed, 300) < 0.9
    probs = torch.nn.functional.one_hot(classes, 2).double()
    assert quality_diversity(collapsed, probs)["diversity_intra"] == pytest.approx(0.0, abs=1e-6)


def test_evaluate_is_does_not_depend_on_sample_order():
    """Class-conditional runs return samples class by class; IS must not see one class per split."""
    from mixgan.data import load_dataset
    from mixgan.metrics.suite import evaluate_samples

    data = load_dataset("digits")
    x, y = data.images("test"), data.y_test
    by_class = torch.argsort(y, stable=True)
    a = evaluate_samples(x, data, metrics=["is"], n_real=200)["is"]
    b = evaluate_samples(x[by_class], data, metrics=["is"], n_real=200)["is"]
    assert b > 5 and abs(a - b) < 0.5
