"""GM-GAN with an encoder (model.encoder=true): its clusters, its CLI, its checkpoints."""
import json

import numpy as np
import pytest
import torch

import mixgan
from mixgan.errors import MixganError

from conftest import small_config

# the CE term on, no neighbour pairs, E from scratch: the settings these tests were written with
ENCODER = {"encoder.enabled": True, "prior.means": "onehot", "prior.sigma": 0.15, "encoder.ce": 10.0,
           "encoder.neighbors": 0, "encoder.init": "scratch", "encoder.space": "pixels"}


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
        plain.cluster(plain.data.images("test"), method="encoder")


def test_report_shows_generated_beside_assigned_images(tmp_path, cli):
    run = mixgan.train(small_config(tmp_path, **ENCODER, **{"data.dataset": "digits", "model.width": 8,
                                                             "prior.components": 10}))
    assert cli("cluster", run.path, "--quiet")[0] == 0
    assert (run.path / "cluster-assigned.png").is_file()
    code, out, err = cli("report", run.path)
    html = (run.path / "report.html").read_text()
    assert code == 0 and "real images assigned to it" in html and "cluster-assigned.png" in html


# the contrastive encoder trained for 40 steps (cached like the recipes' one), so that tests can afford it
SELFSUP = {"encoder.init": "selfsup", "encoder.space": "selfsup", "encoder.neighbors": 3, "encoder.selfsup_steps": 40,
           "encoder.selfsup_batch": 128}


@pytest.mark.parametrize("heads, extra", [(1, {}), (3, {}), (2, SELFSUP)])
def test_resume_with_encoder_matches_uninterrupted_run(tmp_path, heads, extra):
    from test_training import weights

    extra = {**ENCODER, "data.dataset": "digits", "model.width": 8, "prior.components": 10,
             "encoder.heads": heads, "train.steps": 80, **extra}  # heads are chosen until step 20
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
    ({"encoder.enabled": True, "model.info_weight": 1.0}, "alternatives"),
    ({"encoder.enabled": True, "model.name": "gan"}, "for model 'gmgan'"),
    ({"encoder.enabled": True, "encoder.ce": -1.0}, "must be >= 0"),
    ({"prior.means": "onehot", "prior.latent_dim": 4}, "latent_dim >= components"),
    ({"prior.means": "grid"}, "means must be"),
    ({"encoder.enabled": True, "encoder.balance": "kmeans"}, "encoder.balance must be"),
    ({"encoder.enabled": True, "encoder.selflabel": 1.0}, "encoder.selflabel must be in"),
    ({"encoder.enabled": True, "encoder.space": "classifier"}, "encoder.space must be"),
    ({"encoder.enabled": True, "encoder.init": "imagenet"}, "encoder.init must be"),
    ({"encoder.enabled": True, "encoder.selfsup_steps": 0}, "encoder.selfsup_steps and encoder.selfsup_batch must be"),
])
def test_bad_encoder_settings_are_refused(tmp_path, values, message):
    with pytest.raises(MixganError, match=message):
        small_config(tmp_path, **values)


def test_selfsup_settings_on_points_are_one_clear_error(tmp_path, cli):
    cfg = small_config(tmp_path, **{**ENCODER, "encoder.init": "selfsup"})
    with pytest.raises(MixganError, match="need images"):
        mixgan.train(cfg)
    code, out, err = cli("train", "--dataset", "ring", "--set", "model.encoder=true", "--set",
                         "encoder.space=selfsup", "--set", "encoder.neighbors=3", "--out", tmp_path / "c")
    assert code == 2 and "need images" in err and len(err.strip().splitlines()) == 1


def test_selfsup_encoder_starts_from_the_contrastive_body_and_its_kmeans_clusters(tmp_path):
    """encoder.init=selfsup: before any step E's body is the contrastive encoder, and every head puts
    each training image in the cluster of its nearest k-means centre on that body's features
    (restart h for head h), so the heads differ; neighbours are found in the same features."""
    from sklearn.cluster import KMeans

    from mixgan.data import load_dataset
    from mixgan.embeddings.selfsup import SelfSupEmbedding
    from mixgan.models import build_model

    cfg = small_config(tmp_path, **{**ENCODER, **SELFSUP}, **{"data.dataset": "digits", "prior.components": 10,
                                                          "encoder.heads": 2})
    data = load_dataset("digits")
    model = build_model(cfg, data.spec(), "cpu")
    model.attach_data(data)
    emb = SelfSupEmbedding(data.spec(), steps=40, batch_size=128)
    emb.fit(data)
    for key, value in emb.net.state_dict().items():
        assert torch.equal(model.E.net[0].state_dict()[key], value), key
    feats = emb(data.images()).double().numpy()
    model.E.eval()
    with torch.no_grad():
        heads = model.E(data.images().float(), all_heads=True)[0]
    for h in range(2):
        km = KMeans(10, n_init=10, random_state=cfg.train.seed + h).fit(feats)
        assert (heads[:, h].argmax(1).numpy() == km.labels_).mean() > 0.99
    assert (heads[:, 0].argmax(1) != heads[:, 1].argmax(1)).any()
    same = data.y_train[model.neighbors] == data.y_train[:, None]
    assert same.float().mean() > 0.8  # labels only score the neighbours here


def test_balanced_targets_give_every_cluster_an_equal_share_even_when_one_cluster_holds_all():
    """Sinkhorn targets for a batch that E puts almost entirely in cluster 0: every cluster gets n/K of
    the mass, each item's target is a distribution, and the item E ranks highest for a cluster gets it."""
    from mixgan.models.gmgan_encoder import balanced_targets

    torch.manual_seed(0)
    logits = torch.randn(60, 4)
    logits[:, 0] += 6.0
    q = balanced_targets(logits, iters=30)
    assert torch.allclose(q.sum(1), torch.ones(60), atol=1e-4)
    assert torch.allclose(q.sum(0), torch.full((4,), 15.0), atol=0.5)
    assert logits.softmax(1).argmax(1).eq(0).all() and q.argmax(1).bincount(minlength=4).min() > 0
    for k in range(1, 4):
        assert q[(logits[:, k] - logits[:, 0]).argmax(), k] > 0.5


def test_self_label_loss_uses_only_confident_items():
    from mixgan.models.gmgan_encoder import self_label_loss

    a = torch.tensor([[9.0, 0.0, 0.0], [0.1, 0.0, 0.0]])  # item 0 confident in cluster 0, item 1 not
    b = torch.tensor([[0.0, 5.0, 0.0], [0.0, 0.0, 5.0]], requires_grad=True)
    loss = self_label_loss(a, b, 0.99)
    assert loss.item() == pytest.approx(torch.nn.functional.cross_entropy(b[:1], torch.tensor([0])).item())
    loss.backward()
    assert b.grad[1].abs().sum() == 0 and b.grad[0].abs().sum() > 0
    assert self_label_loss(a[1:], b[1:], 0.99).item() == 0.0


@pytest.mark.parametrize("extra", [{"encoder.balance": "sinkhorn"}, {"encoder.selflabel": 0.9},
                                   {"encoder.heads": 3}])
def test_encoder_variants_assign_each_gaussians_samples_to_that_gaussian(tmp_path, extra):
    """The opt-in variants still tie E's clusters to the Gaussians on the toy ring, a little more loosely
    at this budget than the default (400 steps, seed 0: the worst Gaussian measured 0.875 with
    sinkhorn and 0.68 with three heads, where the default keeps every one above 0.9)."""
    run = mixgan.train(small_config(tmp_path, **ENCODER, **extra, **{"train.steps": 400, "train.checkpoint_every": 400,
                                                                     "train.batch_size": 128, "prior.latent_dim": 8,
                                                                     "prior.c": 2.0}))
    hits = [float((run.cluster(run.sample(200, component=k, seed=k).x) == k).mean()) for k in range(8)]
    assert np.mean(hits) > 0.9 and min(hits) > 0.6, hits


def test_the_head_in_use_is_the_lowest_loss_one_until_selection_ends():
    from mixgan.models.gmgan_encoder import Encoder

    enc = Encoder("mlp", (2,), 16, components=4, latent_dim=3, heads=3)
    x = torch.randn(5, 2)
    for _ in range(50):
        enc.track(torch.tensor([3.0, 1.0, 2.0]), selecting=True)
    assert enc.head.item() == 1
    logits, zhat = enc(x)
    every, _ = enc(x, all_heads=True)
    assert every.shape == (5, 3, 4) and zhat.shape == (5, 3) and torch.equal(logits, every[:, 1])
    for _ in range(500):  # head 0 becomes the best, but selection is over: the Gaussians keep their clusters
        enc.track(torch.tensor([0.0, 5.0, 5.0]), selecting=False)
    assert enc.head.item() == 1 and enc.head_loss.argmin().item() == 0
    assert {"head", "head_loss"} <= set(enc.state_dict())
    assert "head" not in Encoder("mlp", (2,), 16, components=4, latent_dim=3).state_dict()


def test_k_follows_the_number_of_classes_of_a_labelled_folder_unless_chosen(tmp_path):
    """The encoder GM-GAN's K is the number of class folders (3, not the image recipe's 10) with the
    data named as its source; a K given by the user is kept."""
    import numpy as np
    from PIL import Image

    import mixgan
    from mixgan.training import RunDir

    rng = np.random.default_rng(0)
    for c in ("red", "green", "blue"):
        (tmp_path / "imgs" / c).mkdir(parents=True)
        for i in range(8):
            Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(tmp_path / "imgs" / c / f"{i}.png")
    base = {"data.dataset": "folder", "data.data_dir": str(tmp_path / "imgs"), "data.resolution": 16,
            "model.name": "gmgan", "train.steps": 2, "train.batch_size": 8, "model.width": 8,
            "encoder.selfsup_steps": 2, "train.device": "cpu", "train.eval_every": 0}
    run = mixgan.train({**base, "out": str(tmp_path / "auto")})
    cfg = RunDir(run.path).config()
    assert cfg.prior.components == 3 and run.model.components == 3
    assert cfg.sources["prior.components"] == "auto: the data's 3 classes"
    run = mixgan.train({**base, "prior.components": 6, "out": str(tmp_path / "chosen")})
    assert RunDir(run.path).config().prior.components == 6


def test_balanced_real_clusters_spread_an_unsure_encoders_labels_like_the_fakes(tmp_path):
    """An unsure E (nearly uniform predictions, tilted towards one cluster) puts every real image in
    that cluster by argmax, so D could tell fakes (uniform k) by their label alone; 'balanced' gives
    every cluster its share of the batch, and keeps a sure, even E's argmax."""
    cfg = small_config(tmp_path, **ENCODER, **{"train.steps": 1, "prior.components": 4, "prior.latent_dim": 8})
    model = mixgan.train(cfg).model
    x = torch.randn(64, 2)
    unsure = torch.randn(64, 4, generator=torch.Generator().manual_seed(0)) * 0.01 + torch.tensor([0.0, 0.0, 0.05, 0.0])
    sure = torch.nn.functional.one_hot(torch.arange(64) % 4, 4).float() * 10
    for logits, argmax_counts in ((unsure, [0, 0, 64, 0]), (sure, [16, 16, 16, 16])):
        model.E.forward = lambda x, all_heads=False, logits=logits: (logits, torch.zeros(len(x), 8))
        model.cfg.encoder.real_cluster = "argmax"
        assert torch.bincount(model.real_cluster(x), minlength=4).tolist() == argmax_counts
        model.cfg.encoder.real_cluster = "balanced"
        counts = torch.bincount(model.real_cluster(x), minlength=4).tolist()
        assert min(counts) >= 12 and max(counts) <= 20, counts
    assert torch.equal(model.real_cluster(x), sure.argmax(1))
