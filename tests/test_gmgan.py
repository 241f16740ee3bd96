"""GM-GAN's own claims: clustering, quality-diversity control, the toy mixtures."""

import pytest


def test_cluster_scores_are_permutation_invariant():
    import numpy as np

    from mixgan.metrics.clustering import cluster_scores, majority_merge

    label = np.repeat(np.arange(4), 25)
    perm = np.array([2, 0, 3, 1])
    s = cluster_scores(perm[label], label)
    assert s["accuracy"] == 1.0 and abs(s["nmi"] - 1) < 1e-9 and abs(s["ari"] - 1) < 1e-9
    noisy = perm[label].copy()
    noisy[:10] = perm[1]  # 10 of label 0 put into label 1's cluster
    assert cluster_scores(noisy, label)["accuracy"] == 0.9
    over = label * 2 + (np.arange(100) % 2)  # 8 clusters, two per label
    assert majority_merge(over, label, 9).tolist() == [0, 0, 1, 1, 2, 2, 3, 3, -1]


class _PlantedNet(__import__("torch").nn.Module):
    """A stand-in generator: the image of Gaussian k is mode k mod 8 of the ring, plus noise."""

    def __init__(self, prior, centers):
        super().__init__()
        self.prior = prior
        self.register_buffer("centers", centers.float())
        self.noise = 0.02

    def forward(self, z, cond=None):
        import torch

        k = self.prior.log_prob_components(z).argmax(1)
        return self.centers[k % len(self.centers)] + self.noise * torch.randn(len(z), 2, device=z.device)


def _planted_run(tmp_path, components, device):
    import mixgan
    from mixgan.data import load_dataset

    from conftest import small_config

    cfg = small_config(tmp_path, device, **{"prior.components": components, "prior.latent_dim": 4, "prior.c": 3.0,
                                    "prior.sigma": 0.1, "train.steps": 1, "train.checkpoint_every": 1})
    run = mixgan.train(cfg)
    data = load_dataset("ring")
    run.model.generator.net = _PlantedNet(run.model.generator.prior, data.centers).to(run.model.device)
    return run, data


def test_clustering_recovers_planted_gaussians(tmp_path, device):
    """K = N: each Gaussian makes one mode, so real points are clustered perfectly."""
    from mixgan.analysis import cluster_run

    run, data = _planted_run(tmp_path, 8, device)
    res = cluster_run(run.model, data, "test", per_component=300)
    assert res.scores["accuracy"] > 0.99 and res.scores["nmi"] > 0.97
    assert sorted(res.gaussian_to_class) == list(range(8))
    assert res.kmeans["accuracy"] > 0.99  # the baseline, k-means on the same real points, separates the ring too
    gaussians = run.cluster(data.centers, per_component=300, device=device)  # the Python entry point
    assert [res.gaussian_to_class[g] for g in gaussians] == list(range(8))


def test_clustering_merges_surplus_gaussians(tmp_path, device):
    """K = 2N: Gaussians k and k + 8 make the same mode and are merged into its class."""
    from mixgan.analysis import cluster_run

    run, data = _planted_run(tmp_path, 16, device)
    res = cluster_run(run.model, data, "test", per_component=300)
    assert res.scores["accuracy_many_to_one"] > 0.99
    assert res.scores["accuracy"] <= res.scores["accuracy_many_to_one"]  # the headline is one-to-one
    g2c = res.gaussian_to_class
    assert all(g2c[k] in (k % 8, -1) for k in range(16))  # -1: a twin the classifier never picks
    assert set(g2c) - {-1} == set(range(8))
    assert (res.pred == res.label).mean() > 0.99


def test_gaussians_merged_into_the_largest_class_score_one_to_one_below_the_majority_baseline(tmp_path):
    """8 of 10 Gaussians make the class holding 62% of the split: merged many-to-one they score high,
    one-to-one they score below putting every point in that class, and a warning says so."""
    import numpy as np
    import torch

    from mixgan.analysis import cluster_run
    from mixgan.data import Dataset
    from mixgan.errors import MixganWarning

    run, ring = _planted_run(tmp_path, 10, "cpu")
    modes = torch.tensor([0, 0, 0, 0, 0, 0, 0, 0, 1, 2])
    angle = torch.arange(8) * (2 * torch.pi / 8)  # Gaussians 0-7: eight parts of mode 0, around its centre
    parts = ring.std * torch.stack([angle.cos(), angle.sin()], 1)
    run.model.generator.net.centers = (ring.centers[modes] + torch.cat([parts, torch.zeros(2, 2)])).float()
    run.model.generator.net.noise = 0.2 * ring.std
    keep = lambda y: torch.cat([(y == 0).nonzero()[:, 0]] + [(y == c).nonzero()[:, 0][:25] for c in range(1, 8)])  # noqa: E731
    tr, te = keep(ring.y_train), keep(ring.y_test)
    data = Dataset("ring", ring.x_train[tr], ring.x_test[te], ring.y_train[tr], ring.y_test[te], num_classes=8,
                   kind="points", centers=ring.centers, std=ring.std)
    with pytest.warns(MixganWarning, match="no better than putting every image in the largest class"):
        res = cluster_run(run.model, data, "test", per_component=300)
    majority = float(np.bincount(data.y_test.numpy()).max() / len(data.y_test))
    assert res.scores["majority_baseline"] == pytest.approx(majority) and majority > 0.4
    assert res.scores["accuracy_many_to_one"] > majority
    assert res.scores["accuracy"] < majority


def test_cluster_cli_on_an_imbalanced_labelled_folder_prints_one_to_one_accuracy_and_the_baseline(tmp_path, cli):
    import json

    import numpy as np
    from PIL import Image

    import mixgan
    from mixgan.data import load_dataset
    from conftest import small_config

    digits = load_dataset("digits")
    x = ((digits.images("train") + 1) * 127.5).round().clamp(0, 255).to(torch_uint8()).numpy()
    for name, digit, count in (("big", 0, 120), ("one", 1, 40), ("two", 2, 40)):
        (tmp_path / "f" / name).mkdir(parents=True)
        for i, a in enumerate(x[digits.y_train.numpy() == digit][:count]):
            Image.fromarray(a[0]).save(tmp_path / "f" / name / f"{i}.png")
    run = mixgan.train(small_config(tmp_path, **{"data.dataset": "folder", "data.data_dir": str(tmp_path / "f"),
                                                 "prior.components": 4, "model.width": 8, "train.steps": 4,
                                                 "train.sample_every": 4, "train.checkpoint_every": 4}))
    code, out, err = cli("cluster", run.path, "--per-component", 30, "--epochs", 1, "--quiet", "--device", "cpu")
    assert code == 0, err
    y = run.data.y_test.numpy()
    m = json.loads((run.path / "cluster.json").read_text())
    assert m["majority_baseline"] == pytest.approx(np.bincount(y).max() / len(y))
    lines = dict(line.rsplit(None, 1) for line in out.splitlines() if line[:1].isalpha() and "  " in line)
    assert float(lines["accuracy (one-to-one)"]) == pytest.approx(m["accuracy"], abs=1e-4)
    assert float(lines["majority-class baseline"]) == pytest.approx(m["majority_baseline"], abs=1e-4)
    assert "accuracy (many-to-one: 4 Gaussians merged into 3 classes)" in lines
    assert "kmeans accuracy (one-to-one)" in lines
    if m["classes_covered"] < 3:
        assert f"mixgan: warning: collapse: the 4 Gaussians make only {m['classes_covered']} of the 3 classes" in err


def torch_uint8():
    import torch

    return torch.uint8


def test_cluster_cli_writes_assignments_and_refuses_plain_gan(tmp_path, cli, device):
    import numpy as np

    import mixgan
    from conftest import small_config

    run = mixgan.train(small_config(tmp_path, device, **{"train.steps": 10}))
    code, out, err = cli("cluster", run.path, "--per-component", 50, "--quiet", "--device", device)
    assert code == 0, err
    a = np.load(run.path / "assignments.npz")
    assert a["pred"].shape == a["label"].shape == (len(run.data.x_test),)
    assert "kmeans accuracy" in out
    gan = mixgan.train(small_config(tmp_path / "g", **{"model.name": "gan", "train.steps": 10}))
    code, out, err = cli("cluster", gan.path)
    assert code == 2 and "no Gaussian components" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
@pytest.mark.parametrize("dataset, components", [("grid", 25), ("ring", 8)])
def test_default_gmgan_covers_the_toy_mixture(tmp_path, device, dataset, components):
    """README's claim for the toy preset (seed 0 here; docs/toy.md has seeds 0-9 on the CPU): 2,500
    samples reach every mode, and at least 95% of them lie within 3 std of one."""
    import mixgan
    from mixgan.data import load_dataset
    from mixgan.metrics import mode_stats

    cfg = mixgan.build_config({"model.name": "gmgan", "data.dataset": dataset, "prior.components": components,
                               "train.device": device, "out": str(tmp_path / "run")})
    run = mixgan.train(cfg)
    data = load_dataset(dataset)
    stats = mode_stats(run.sample(2500, seed=1000).x, data.centers, data.std)
    assert stats["modes"] == components, stats
    assert stats["high_quality"] >= 0.95, stats


def _monotone(values, increasing, slack=1):
    """True when at most ``slack`` consecutive steps go the wrong way."""
    wrong = sum((b < a) if increasing else (b > a) for a, b in zip(values, values[1:]))
    return wrong <= slack


@pytest.mark.slow
def test_latent_scale_trades_quality_for_diversity(tmp_path, cli):
    """Post-training control: as s grows, quality falls and diversity rises (digits, the paper's model)."""
    import json

    import mixgan

    cfg = mixgan.build_config({"recipe": "digits-gmgan-paper", "data.dataset": "digits", "prior.components": 10,
                               "train.steps": 1500, "out": str(tmp_path / "run")})
    run = mixgan.train(cfg)
    code, out, err = cli("tradeoff", run.path, "--scales", "0.25,0.5,1,2", "--n", 1000, "--quiet")
    assert code == 0, err
    sweep = json.loads((run.path / "tradeoff.json").read_text())
    assert _monotone(sweep["quality"], increasing=False), sweep
    assert _monotone(sweep["diversity"], increasing=True), sweep
    assert sweep["quality"][0] > sweep["quality"][-1] and sweep["diversity"][-1] > sweep["diversity"][0]
    code, out, err = cli("report", run.path)
    html = (run.path / "report.html").read_text()
    assert code == 0 and "data:image/png;base64" in html and "not computed yet: <code>mixgan cluster" in html


def test_gaussian_purity_tells_mixed_gaussians_from_missing_classes():
    """Gaussians that copy one digit class each are pure; a Gaussian drawing two classes is half pure."""
    from types import SimpleNamespace

    import torch

    from mixgan.analysis.cluster import gaussian_purity
    from mixgan.data import load_dataset

    data = load_dataset("digits")

    class Copier:  # Gaussian k "generates" real test images of classes[k]
        components, device = 4, "cpu"

        def __init__(self, classes):
            self.classes = classes

        def sample(self, n, component, generator):
            pool = torch.cat([(data.y_test == c).nonzero()[:, 0] for c in self.classes[component]])
            return SimpleNamespace(x=data.images("test")[pool[torch.randint(len(pool), (n,), generator=generator)]])

    pure = gaussian_purity(Copier([[0], [1], [1], [7]]), data)
    assert pure["gaussian_class"] == [0, 1, 1, 7] and pure["classes_covered"] == 3 and pure["purity"] > 0.95
    mixed = gaussian_purity(Copier([[0], [3, 5], [1], [7]]), data)
    assert 0.3 < mixed["gaussian_purity"][1] < 0.7 and mixed["gaussian_class"][1] in (3, 5)


def _info_head_accuracy(path, device):
    """Share of G's samples whose Gaussian D's "which Gaussian" head names, after 500 steps on the
    ring with overlapping Gaussians (sigma 0.25 in 16-d); also the samples, for the shape checks."""
    import mixgan
    from conftest import small_config

    run = mixgan.train(small_config(path, device, **{"train.steps": 500, "train.batch_size": 128,
                                                     "train.lr_g": 1e-3, "train.lr_d": 1e-3,
                                                     "model.info_weight": 1.0, "model.width": 32,
                                                     "prior.sigma": 0.25, "train.checkpoint_every": 500,
                                                     "train.sample_every": 500}))
    s = run.sample(800, seed=1)
    _, which = run.model.D(s.x.to(run.model.device))  # Samples come back on the CPU
    assert which.shape == (800, 8)
    return float((which.argmax(1).cpu() == s.component).float().mean()), s


def test_info_weight_makes_gaussians_tell_apart(tmp_path, device, monkeypatch):
    """The optional "which Gaussian" head: with G's share of the info term, D's head names the
    Gaussian of G's samples (93-99% on seeds 0-2). The Gaussians overlap enough that G alone does
    not keep them apart: with the term dropped from ``generator_loss`` (D's head still trained)
    the head names 44-46%. Without the option D has no such head."""
    import mixgan
    from conftest import small_config
    from mixgan.models import losses
    from mixgan.models.gmgan import GMGAN

    accuracy, s = _info_head_accuracy(tmp_path / "info", device)
    assert accuracy > 0.85
    monkeypatch.setattr(GMGAN, "generator_loss", lambda self, fake: losses.g_loss(self.D(fake.x)[0], self.loss_kind))
    assert _info_head_accuracy(tmp_path / "dropped", device)[0] < 0.6
    plain = mixgan.train(small_config(tmp_path / "plain", device, **{"train.steps": 1}))
    assert plain.model.D(s.x.to(plain.model.device)).shape == (800, 1)


def test_info_weight_must_not_be_negative(tmp_path):
    import mixgan
    from conftest import small_config

    with pytest.raises(mixgan.MixganError, match="info_weight must be >= 0"):
        small_config(tmp_path, **{"model.info_weight": -1})
