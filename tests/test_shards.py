import copy
import json

import numpy as np
import pytest
import torch

import mixgan
from mixgan.data import load_dataset
from mixgan.data.batches import BatchSource
from mixgan.data.pack import pack
from mixgan.data.shards import ShardWriter, read_manifest, verify
from mixgan.errors import MixganError
from mixgan.training.loop import BatchStream

from conftest import small_config
from test_training import Crash, weights


def numbered_npz(path, n_train=60, n_test=12, side=8, channels=1):
    """uint8 images whose first pixels spell their own index, with labels index % 3."""
    rng = np.random.default_rng(0)

    def make(n, base):
        x = rng.integers(0, 256, (n, channels, side, side)).astype(np.uint8)
        x[:, 0, 0, 0], x[:, 0, 0, 1] = (np.arange(n) + base) % 256, (np.arange(n) + base) // 256
        return x, (np.arange(n) % 3).astype(np.int64)

    (x, y), (xt, yt) = make(n_train, 0), make(n_test, 1000)
    np.savez(path, x=x, y=y, x_test=xt, y_test=yt)
    return path


def image_id(x: torch.Tensor) -> list[int]:
    return (x[:, 0, 0, 0].long() + 256 * x[:, 0, 0, 1].long()).tolist()


@pytest.fixture
def packed(tmp_path):
    src = numbered_npz(tmp_path / "d.npz")
    pack(f"npz:{src}", tmp_path / "shards", shard_size=25)
    return src, tmp_path / "shards"


def test_pack_keeps_every_image_label_and_split_in_order(packed):
    src, out = packed
    mem, sh = load_dataset(f"npz:{src}"), load_dataset(f"shards:{out}")
    manifest = read_manifest(out)
    assert [s["count"] for s in manifest["splits"]["train"]["shards"]] == [25, 25, 10]
    assert sh.shape == mem.shape and sh.streamed and not mem.streamed and sh.num_classes == 3
    assert torch.equal(sh.x_train[torch.arange(60)], mem.x_train) and torch.equal(sh.y_train, mem.y_train)
    assert torch.equal(sh.x_test[torch.arange(12)], mem.x_test) and torch.equal(sh.y_test, mem.y_test)
    assert torch.equal(sh.x_train[torch.tensor([59, 3, 26])], mem.x_train[[59, 3, 26]])  # across shards, any order


@pytest.mark.slow
@pytest.mark.parametrize("model", [{"model.name": "gan"},
                                   {"model.name": "icgan", "model.embedding": "projection", "model.k": 3}])
def test_training_from_shards_equals_training_in_memory(tmp_path, packed, model):
    """The same batches in the same order (IC-GAN: the same neighbours picked): the same weights,
    bit for bit, whatever the workers."""
    src, out = packed
    base = {"train.eval_every": 0, "train.steps": 6, "train.batch_size": 16, "model.width": 4,
            "train.checkpoint_every": 3, "train.sample_every": 100, **model}
    streamed = small_config(tmp_path / "sh", **base, **{"data.dataset": f"shards:{out}", "data.workers": 1})
    held = copy.deepcopy(streamed)  # the same settings (npz: and shards: take different presets)
    held.data.dataset, held.out = f"npz:{src}", str(tmp_path / "mem" / "run")
    mixgan.train(held)
    mixgan.train(streamed)
    a, b = weights(tmp_path / "mem" / "run"), weights(tmp_path / "sh" / "run")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resumed_shard_run_equals_uninterrupted(tmp_path, packed):
    _, out = packed
    base = {"train.eval_every": 0, "model.name": "gan", "train.steps": 20, "train.batch_size": 16, "model.width": 4,
            "data.dataset": f"shards:{out}", "data.workers": 0, "train.sample_every": 100}
    mixgan.train(small_config(tmp_path / "a", **base))
    crashed = small_config(tmp_path / "b", **base)
    with pytest.raises(KeyboardInterrupt):
        mixgan.train(crashed, progress=Crash())
    record = json.loads(sorted((tmp_path / "b" / "run" / "checkpoints").glob("step-*.json"))[-1].read_text())
    assert record["step"] == 10 and record["batches_read"] == 10  # the loader's position
    mixgan.train(crashed, resume=True)
    a, b = weights(tmp_path / "a" / "run"), weights(tmp_path / "b" / "run")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_ranks_split_every_epoch_so_each_image_is_seen_once(packed):
    _, out = packed
    data = load_dataset(f"shards:{out}")
    world, batch = 2, 6  # 60 images: 30 a rank, 5 batches a rank per epoch
    seen = []
    for rank in range(world):
        order = BatchStream(len(data.x_train), batch, seed=3, rank=rank, world_size=world)
        loader = BatchSource(data.x_train, data.y_train, None, order, torch.device("cpu"))
        for b in range(5):
            rows = loader.get(b)
            x = ((rows.x + 1) * 127.5).round().to(torch.uint8)
            assert image_id(x) == rows.index.tolist()
            assert torch.equal(rows.y, rows.index % 3)  # labels travel with their images
            seen += image_id(x)
        loader.close()
    assert sorted(seen) == list(range(60))


def test_a_changed_shard_is_named_and_refused(packed, tmp_path):
    _, out = packed
    shard = out / "train-00001.npy"
    raw = bytearray(shard.read_bytes())
    raw[-5] ^= 0xFF  # same size, one byte off
    shard.write_bytes(bytes(raw))
    with pytest.raises(MixganError, match="train-00001.npy: SHA-256 does not match"):
        load_dataset(f"shards:{out}")
    with pytest.raises(MixganError, match="train-00001.npy: SHA-256 does not match"):
        verify(out)
    shard.write_bytes(bytes(raw[:-100]))
    with pytest.raises(MixganError, match="train-00001.npy: shard does not match the manifest"):
        load_dataset(f"shards:{out}")


def test_a_newer_manifest_version_is_refused(packed):
    _, out = packed
    m = json.loads((out / "manifest.json").read_text())
    m["version"] = 99
    (out / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(MixganError, match="version 99 is newer"):
        load_dataset(f"shards:{out}")


def test_grey_shards_train_in_colour_and_mixed_folders_pack_in_colour(tmp_path, packed):
    from PIL import Image

    _, out = packed
    sh = load_dataset(f"shards:{out}", channels=3)
    x = sh.x_train[torch.arange(4)]
    assert sh.shape == (3, 8, 8) and torch.equal(x[:, 0], x[:, 2])
    folder = tmp_path / "photos"
    (folder / "cats").mkdir(parents=True)
    (folder / "dogs").mkdir()
    for i in range(3):
        Image.new("L", (20 + i, 16), 40 * i).save(folder / "cats" / f"{i}.png")
        Image.new("RGB", (16, 30), (250, 10, 10 * i)).save(folder / "dogs" / f"{i}.jpg")
    (folder / "dogs" / "broken.jpg").write_bytes(b"\xff\xd8 nope")
    with pytest.warns(mixgan.errors.MixganWarning, match="skipped 1"):
        result = pack(str(folder), tmp_path / "ph", resolution=16, test_fraction=0.34)
    m = result.manifest
    assert m["shape"] == [3, 16, 16] and m["classes"] == ["cats", "dogs"] and result.skipped == 1
    assert m["splits"]["train"]["count"] + m["splits"]["test"]["count"] == 6
    d = load_dataset(f"shards:{tmp_path / 'ph'}")
    assert sorted(torch.cat([d.y_train, d.y_test]).tolist()) == [0, 0, 0, 1, 1, 1]


def test_cli_pack_verify_and_a_bad_source_are_one_line(tmp_path, cli, packed):
    src, _ = packed
    code, out, err = cli("data", "pack", f"npz:{src}", tmp_path / "o", "--shard-size", 40, "--quiet")
    assert code == 0 and "packed: 60 train and 12 test images of shape (1, 8, 8) into 3 shards" in out
    code, out, _ = cli("data", "verify", tmp_path / "o")
    assert code == 0 and out.startswith("ok: 3 shards")
    code, _, err = cli("data", "pack", tmp_path / "nothing-here", tmp_path / "p")
    assert code == 2 and err.count("\n") == 1 and "neither a folder of images nor a dataset name" in err
    code, _, err = cli("data", "pack", f"npz:{src}", tmp_path / "o")
    assert code == 2 and "already holds packed shards" in err


def test_writer_refuses_images_of_another_shape(tmp_path):
    w = ShardWriter(tmp_path / "w", (1, 8, 8))
    with pytest.raises(MixganError, match="uint8 images of shape"):
        w.add("train", np.zeros((2, 3, 8, 8), np.uint8))


def test_gmgan_with_encoder_pairs_trains_from_shards(tmp_path, packed, monkeypatch):
    """The encoder's neighbour pairs of a streamed batch are read from the shards: the pair of image i
    is one of i's neighbours in the model's table."""
    from mixgan.models.gmgan_encoder import GMGANWithEncoder

    _, out = packed
    seen = []
    original = GMGANWithEncoder.real_batch

    def spy(self, rows):
        b = original(self, rows)
        seen.append((rows.index.clone(), b.pair.clone(), self.neighbors[:].clone()))
        return b

    monkeypatch.setattr(GMGANWithEncoder, "real_batch", spy)
    cfg = small_config(tmp_path, **{"train.eval_every": 0, "model.name": "gmgan", "data.dataset": f"shards:{out}",
                                    "encoder.enabled": True,
                                    "encoder.neighbors": 2, "model.width": 4, "train.steps": 2,
                                    "train.batch_size": 8, "data.workers": 0, "prior.components": 3})
    mixgan.train(cfg)
    index, pair, neighbors = seen[0]
    assert pair.shape == (8, 1, 8, 8)
    ids = image_id(((pair + 1) * 127.5).round().to(torch.uint8))
    assert all(j in neighbors[i].tolist() for i, j in zip(index.tolist(), ids))


def test_class_conditional_models_train_from_shards_with_their_labels(tmp_path, packed):
    _, out = packed
    cfg = small_config(tmp_path, **{"train.eval_every": 0, "model.name": "cgan", "data.dataset": f"shards:{out}",
                                    "model.width": 4,
                                    "train.steps": 2, "train.batch_size": 8, "data.workers": 0})
    run = mixgan.load(mixgan.train(cfg).path)
    s = run.sample(6, label=2, seed=0)
    assert s.x.shape == (6, 1, 8, 8) and (s.label == 2).all()
