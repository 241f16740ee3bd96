"""GM-GAN with an encoder (model.encoder=true): its clusters, its CLI, its checkpoints."""
import json

import numpy as np
import pytest
import torch

import mixgan
from mixgan.errors import MixganError

from conftest import small_config

ENCODER = {"model.encoder": True, "prior.means": "onehot", "prior.sigma": 0.15}


def test_encoder_assigns_each_gaussians_samples_to_that_gaussian(tmp_path):
    """Toy ring, K = 8, means 2·e_k in 8-d: after a short run a sample of Gaussian k is put in cluster k."""
    run = mixgan.train(small_config(tmp_path, **ENCODER, **{"train.steps": 400, "train.checkpoint_every": 400,
                                                             "train.batch_size": 128, "prior.latent_dim": 8,
                                                             "prior.c": 2.0}))
    hits = []
    for k in range(8):
        x = run.sample(200, component=k, seed=k).x
        hits.append(float((run.cluster(x) == k).mean()))
    assert min(hits) > 0.9, hits
    assert run.model.E is not None and "E" in run.model.modules()


def test_cluster_method_defaults_to_encoder_and_refuses_it_without_one(tmp_path, cli):
    enc = mixgan.train(small_config(tmp_path / "e", **ENCODER))
    code, out, err = cli("cluster", enc.path, "--quiet")
    assert code == 0, err
    result = json.loads((enc.path / "cluster.json").read_text())
    assert result["method"] == "encoder" and {"accuracy", "nmi", "ari", "kmeans"} <= set(result)
    a = np.load(enc.path / "assignments.npz")
    assert set(a.files) == {"pred", "gaussian", "label"} and a["gaussian"].shape == (len(enc.data.x_test),)
    code, out, err = cli("cluster", enc.path, "--quiet", "--method", "classifier", "--per-component", 50)
    assert code == 0 and json.loads((enc.path / "cluster.json").read_text())["method"] == "classifier"
    plain = mixgan.train(small_config(tmp_path / "p", **{"train.steps": 10}))
    code, out, err = cli("cluster", plain.path, "--method", "encoder")
    assert code == 2 and "no encoder" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(MixganError, match="no encoder"):
        plain.cluster(plain.data.x_test, method="encoder")


def test_report_shows_generated_beside_assigned_images(tmp_path, cli):
    run = mixgan.train(small_config(tmp_path, **ENCODER, **{"data.dataset": "digits", "model.width": 8,
                                                             "prior.components": 10}))
    assert cli("cluster", run.path, "--quiet")[0] == 0
    assert (run.path / "cluster-assigned.png").is_file()
    code, out, err = cli("report", run.path)
    html = (run.path / "report.html").read_text()
    assert code == 0 and "real images assigned to it" in html and "cluster-assigned.png" in html


def test_resume_with_encoder_matches_uninterrupted_run(tmp_path):
    from test_training import weights

    extra = {**ENCODER, "data.dataset": "digits", "model.width": 8, "prior.components": 10}
    mixgan.train(small_config(tmp_path / "a", **extra))

    class Crash:  # the process "dies" at step 13, after the checkpoint of step 10
        def start(self, initial, total): pass
        def close(self): pass
        def update(self, step, logs):
            if step == 13:
                raise KeyboardInterrupt

    crashed = small_config(tmp_path / "b", **extra)
    with pytest.raises(KeyboardInterrupt):
        mixgan.train(crashed, progress=Crash())
    mixgan.train(crashed, resume=True)
    wa, wb = weights(tmp_path / "a" / "run"), weights(tmp_path / "b" / "run")
    assert any(key.startswith("E") for key in wa) and wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


@pytest.mark.parametrize("values, message", [
    ({"model.encoder": True, "model.info_weight": 1.0}, "alternatives"),
    ({"model.encoder": True, "model.name": "gan"}, "for model 'gmgan'"),
    ({"model.encoder": True, "model.encoder_ce": -1.0}, "must be >= 0"),
    ({"prior.means": "onehot", "prior.latent_dim": 4}, "latent_dim >= components"),
    ({"prior.means": "grid"}, "means must be"),
])
def test_bad_encoder_settings_are_refused(tmp_path, values, message):
    with pytest.raises(MixganError, match=message):
        small_config(tmp_path, **values)
