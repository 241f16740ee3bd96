"""mixgan evaluate: npz samples from any source, trained runs, toy runs, conditional samples."""
import json
import re

import numpy as np
import pytest
import torch

import mixgan
from mixgan.cli.evaluate import sample_run
from mixgan.data import load_dataset
from mixgan.errors import MixganError
from mixgan.metrics import evaluate_samples, get_classifier, mode_stats
from mixgan.models import Samples

from conftest import small_config

KEYS = {"fid", "is", "precision", "recall", "density", "coverage", "quality", "diversity", "n_real", "n_fake",
        "backbone"}


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def write(path, **arrays):
    np.savez(path, **arrays)
    return path


def test_digits_classifier_is_cached_accurate_and_reused(digits, cli):
    cls = get_classifier("digits")
    assert cls.accuracy >= 0.95
    again = get_classifier("digits")
    assert again.path == cls.path and torch.equal(again.features(digits.images("test")[:5]), cls.features(digits.images("test")[:5]))
    assert cls.features(digits.images("test")[:7]).shape == (7, 128) and cls.probs(digits.images("test")[:7]).shape == (7, 10)
    code, out, _ = cli("classifier", "info", "--dataset", "digits")
    assert code == 0 and f"{cls.accuracy:.4f}" in out


def test_evaluate_npz_real_test_split_beats_noise(digits, cli, tmp_path):
    x = digits.images("test")
    as_uint8 = ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
    gen = torch.Generator().manual_seed(0)
    noisy = (x + 0.8 * torch.randn(x.shape, generator=gen)).clamp(-1, 1).numpy()
    code, out, err = cli("evaluate", "--samples", write(tmp_path / "real.npz", x=as_uint8), "--dataset", "digits",
                         "--json", tmp_path / "real.json", "--quiet")
    assert code == 0, err
    assert "fid" in out and "precision" in out
    real = json.loads((tmp_path / "real.json").read_text())
    assert KEYS <= set(real) and real["backbone"] == "classifier"
    assert real["n_fake"] == len(x) and real["n_real"] == len(digits.x_train)
    code, _, err = cli("evaluate", "--samples", write(tmp_path / "noisy.npz", x=noisy), "--dataset", "digits",
                       "--json", tmp_path / "noisy.json", "--metrics", "fid,prdc,qd", "--quiet")
    assert code == 0, err
    noise = json.loads((tmp_path / "noisy.json").read_text())
    assert "is" not in noise
    assert noise["fid"] > 10 * real["fid"]
    assert real["precision"] > 0.8 and real["recall"] > 0.8
    # noisy fakes spread out, so their k-NN balls grow and recall stays fairly high on digits;
    # precision, density and coverage collapse
    assert noise["precision"] < real["precision"] - 0.5 and noise["coverage"] < 0.5 * real["coverage"]
    assert real["quality"] > noise["quality"]
    assert real["is"] > 7  # ten classes, confidently and evenly predicted


def test_evaluate_rejects_bad_samples(cli, tmp_path):
    cases = [
        (write(tmp_path / "nox.npz", y=np.zeros(3)), "no 'x' array"),
        (write(tmp_path / "shape.npz", x=np.zeros((4, 1, 28, 28), np.float32)), "do not match the dataset's 1x8x8"),
        (write(tmp_path / "range.npz", x=np.full((4, 1, 8, 8), 255.0, np.float32)), "must lie in \\[-1, 1\\]"),
        (write(tmp_path / "nan.npz", x=np.full((4, 1, 8, 8), np.nan, np.float32)), "NaN"),
        (tmp_path / "missing.npz", "file not found"),
    ]
    for path, message in cases:
        code, _, err = cli("evaluate", "--samples", path, "--dataset", "digits", "--quiet")
        assert code == 2 and err.startswith("mixgan: error: "), (path, err)
        assert re.search(message, err), err
    code, _, err = cli("evaluate", "--samples", tmp_path / "nox.npz", "--quiet")
    assert code == 2 and "--dataset" in err
    code, _, err = cli("evaluate", "--samples", write(tmp_path / "ok.npz", x=np.zeros((4, 8, 8), np.uint8)),
                       "--dataset", "digits", "--metrics", "fid,cas", "--quiet")
    assert code == 2 and "cas needs labelled samples" in err


class ClassStub:
    """A 'class-conditional model' whose samples of class y are real test images of class y
    (or of class y+1 when ``wrong``), to check the conditional path end to end."""

    def __init__(self, data, wrong=False):
        self.data, self.wrong = data, wrong
        self.model = type("M", (), {"class_conditional": True, "num_classes": data.num_classes})()

    def sample(self, n, label=None, seed=0):
        pool = self.data.images("test")[self.data.y_test == (label + self.wrong) % self.data.num_classes]
        idx = torch.randint(len(pool), (n,), generator=torch.Generator().manual_seed(seed))
        return Samples(pool[idx], label=torch.full((n,), label))


def test_conditional_samples_get_conditional_accuracy_intra_fid_and_cas(digits):
    x, labels = sample_run(ClassStub(digits), 300, seed=0)
    assert np.bincount(labels).tolist() == [30] * 10
    good = evaluate_samples(x, digits, labels=labels, metrics="fid,cas")
    assert good["conditional_accuracy"] > 0.95 and good["cas"] > 0.8
    x, labels = sample_run(ClassStub(digits, wrong=True), 300, seed=0)
    bad = evaluate_samples(x, digits, labels=labels, metrics="fid")
    assert bad["conditional_accuracy"] < 0.1
    assert bad["intra_fid"] > 3 * good["intra_fid"]
    assert abs(bad["fid"] - good["fid"]) < 0.5 * good["intra_fid"] + 1  # plain FID cannot tell


def test_evaluate_a_trained_run_writes_metrics_json_reproducibly(tmp_path, cli, device):
    run = mixgan.train(small_config(tmp_path, device, **{"data.dataset": "digits", "model.width": 8,
                                                         "train.steps": 20}))
    code, out, err = cli("evaluate", run.path, "--n", 300, "--metrics", "fid,is,prdc,qd", "--quiet", "--device", device)
    assert code == 0, err
    first = json.loads((run.path / "metrics.json").read_text())
    assert KEYS <= set(first) and first["n_fake"] == 300
    x, _ = sample_run(mixgan.load(run.path, device=device), 300, seed=0)  # the figures are the run's own samples
    direct = evaluate_samples(x, load_dataset("digits"), metrics="fid,prdc")
    assert (first["fid"], first["precision"], first["coverage"]) == (direct["fid"], direct["precision"],
                                                                     direct["coverage"])
    code, _, _ = cli("evaluate", run.path, "--n", 300, "--metrics", "fid,is,prdc,qd", "--quiet", "--device", device)
    again = json.loads((run.path / "metrics.json").read_text())
    assert {k: again[k] for k in KEYS} == {k: first[k] for k in KEYS}


def test_evaluate_a_toy_run_reports_modes(tmp_path, cli):
    run = mixgan.train(small_config(tmp_path))
    code, out, err = cli("evaluate", run.path, "--n", 500, "--json", tmp_path / "m.json", "--quiet")
    assert code == 0, err
    m = json.loads((tmp_path / "m.json").read_text())
    assert {"modes", "high_quality", "kl", "precision", "recall", "n_fake"} <= set(m)
    ring = load_dataset("ring")
    direct = evaluate_samples(run.sample(500, seed=0).x, ring)  # the figures are those of the run's samples
    numbers = [k for k, v in direct.items() if isinstance(v, (int, float))]
    assert "modes" in numbers and {k: float(m[k]) for k in numbers} == {k: direct[k] for k in numbers}
    assert "modes" in out
    with pytest.raises(MixganError, match="unknown metric"):
        evaluate_samples(ring.x_test[:100], ring, metrics="fid")


def test_toy_mode_metric_scores_collapsed_and_off_mode_samples_worse():
    ring = load_dataset("ring")
    x, y = ring.x_test[:2400], ring.y_test[:2400]
    perfect = evaluate_samples(x, ring, metrics="modes")
    # 2-D Gaussian: P(r < 3 std) = 1 - exp(-4.5) = 0.989
    assert perfect["modes"] == 8 and perfect["high_quality"] > 0.98 and perfect["kl"] < 0.01
    collapsed = evaluate_samples(x[y < 3], ring, metrics="modes")  # three of the eight modes
    assert collapsed["modes"] == 3 and collapsed["kl"] > 0.9 > 100 * perfect["kl"]
    between = (ring.centers + ring.centers.roll(1, 0)) / 2  # half-way between neighbouring modes
    off = evaluate_samples(torch.cat([x[:1200], between[y[1200:]]]), ring, metrics="modes")
    assert off["modes"] == 8 and abs(off["high_quality"] - perfect["high_quality"] / 2) < 0.02
    # exact counts: points on the centres, mode 7 below the 20 samples that make a mode count
    on = ring.centers[torch.tensor([0] * 200 + [1] * 100 + [7] * 19)]
    s = mode_stats(torch.cat([on, torch.zeros(81, 2)]), ring.centers, ring.std)
    assert s["counts"] == [200, 100, 0, 0, 0, 0, 0, 19] and s["modes"] == 2
    assert s["high_quality"] == pytest.approx(319 / 400)
    p = np.array([200, 100, 19]) / 319
    assert s["kl"] == pytest.approx(float((p * np.log(8 * p)).sum()))
    assert mode_stats(torch.zeros(10, 2), ring.centers, ring.std)["kl"] == float("inf")


def test_evaluate_a_class_conditional_run_reports_conditional_metrics(tmp_path, cli):
    run = mixgan.train(small_config(tmp_path, **{"model.name": "cgan", "data.dataset": "digits", "model.width": 8,
                                                 "train.steps": 10, "prior.components": 1}))
    assert run.model.class_conditional
    code, out, err = cli("evaluate", run.path, "--n", 200, "--metrics", "fid", "--quiet")
    assert code == 0, err
    m = json.loads((run.path / "metrics.json").read_text())
    assert {"conditional_accuracy", "intra_fid", "fid"} <= set(m) and "conditional_accuracy" in out
    x, labels = sample_run(mixgan.load(run.path), 200, seed=0)
    assert np.bincount(labels).tolist() == [20] * 10  # every class asked for equally
    direct = evaluate_samples(x, load_dataset("digits"), labels=labels, metrics="fid")
    assert (m["conditional_accuracy"], m["intra_fid"]) == (direct["conditional_accuracy"], direct["intra_fid"])


def test_classifier_training_is_seeded_and_a_damaged_cache_entry_is_not_used(digits, tmp_path):
    import shutil

    from mixgan.metrics.classifier import _load_classifier, train_cnn

    x, y = digits.images()[:256], digits.y_train[:256]
    a, b, c = (train_cnn(x, y, 10, epochs=2, seed=s).state_dict() for s in (0, 0, 1))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    folder = tmp_path / "copy"
    shutil.copytree(get_classifier(digits).path, folder)
    assert _load_classifier(folder) is not None
    raw = bytearray((folder / "model.safetensors").read_bytes())
    raw[-1] ^= 0xFF
    (folder / "model.safetensors").write_bytes(bytes(raw))
    assert _load_classifier(folder) is None  # checksum mismatch: retrained, never trusted


class Recorder:
    """A progress reporter that keeps what the library announced."""

    def __init__(self):
        self.begun, self.done = [], []

    def begin(self, what, total, eta):
        self.begun.append((what, total, eta))

    def advance(self, done):
        self.done.append(done)

    def end(self, seconds):
        pass


def test_training_the_reference_classifier_is_announced_with_an_estimate(digits, monkeypatch):
    from mixgan import progress
    from mixgan.metrics import classifier

    monkeypatch.setattr(classifier, "default_epochs", lambda n: 1)
    rec = Recorder()
    previous = progress.set_reporter(rec)
    try:
        classifier.train_reference_classifier(digits)
    finally:
        progress.set_reporter(previous)
    (what, total, eta), *_ = rec.begun
    assert "reference classifier of digits" in what and total == 12 and eta > 0
    assert rec.done[-1] == total


def flat_folder(path, digits, n=300):
    """``n`` digits as 8x8 grey PNGs directly in ``path``: a folder without class labels."""
    from PIL import Image

    path.mkdir()
    x = ((digits.images("train")[:n] + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
    for i, a in enumerate(x):
        Image.fromarray(a[0]).save(path / f"{i:04d}.png")
    return path


def test_a_folder_without_labels_is_scored_in_a_label_free_space_beside_both_anchors(digits, cli, tmp_path,
                                                                                       monkeypatch):
    from mixgan.metrics import selfsup
    from mixgan.metrics.registry import SCORES

    monkeypatch.setattr(selfsup, "MIN_STEPS", 30)
    monkeypatch.setattr(selfsup, "BATCH", 64)
    monkeypatch.setenv("MIXGAN_CACHE", str(tmp_path / "cache"))  # the feature network is trained here, announced
    folder = flat_folder(tmp_path / "flat", digits)
    data = load_dataset("folder", str(folder))
    assert data.y_train is None
    x = data.images("test")
    noisy = (x + 0.5 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(-1, 1).numpy()
    code, out, err = cli("evaluate", "--samples", write(tmp_path / "s.npz", x=noisy), "--dataset", "folder",
                         "--data-dir", folder, "--json", tmp_path / "m.json")
    assert code == 0, err
    assert re.search(r"mixgan: training the label-free feature network on 240 images of folder \(38 steps\) "
                     r"\(about \d+ s\)", err)
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["backbone"] == "selfsup" and m["feature_net"].startswith("selfsup: contrastive encoder")
    assert "38 steps of 64" in m["feature_net"] and m["feature_net"] in out
    assert {"fid", "kid", "precision", "recall"} <= set(m) and "is" not in m and "quality" not in m
    held, const = m["anchors"]["held_out"], m["anchors"]["constant"]
    assert held["n"] == const["n"] == len(x)
    header = next(line for line in out.splitlines() if line.startswith("score"))
    assert "held-out real" in header and "constant grey" in header
    printed = [line.split()[0] for line in out.splitlines()[3:] if line.split() and line.split()[0] in SCORES]
    assert {"fid", "kid", "precision", "recall", "density", "coverage"} <= set(printed)
    for key in printed:
        worse = const[key] < held[key] if SCORES[key].higher_better else const[key] > held[key]
        assert worse, (key, held[key], const[key])
    assert m["fid"] > held["fid"] and m["recall"] < held["recall"]  # noise is worse than real images too


def test_a_toy_sample_file_with_infinite_points_is_refused_in_one_line(cli, tmp_path):
    code, out, err = cli("evaluate", "--samples", write(tmp_path / "inf.npz", x=np.full((50, 2), np.inf, np.float32)),
                         "--dataset", "ring", "--quiet")
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [f"mixgan: error: {tmp_path / 'inf.npz'}: points contain NaN or infinite values"]
