"""IC-GAN at scale: streamed embeddings, the approximate index, memory-mapped tables that survive kill -9."""
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import mixgan
from mixgan.data import Dataset, load_dataset
from mixgan.embeddings import embed, get_embedding, knn, recall_at_k, resolve_method
from mixgan.data.rows import NpyRows
from mixgan.embeddings import store
from mixgan.errors import MixganError
from mixgan.models import build_model

from test_icgan import icgan_config
from test_knn import LargestTensor


def uint8_images(m: int, shape=(1, 8, 8), seed: int = 0) -> Dataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (m, *shape), generator=g, dtype=torch.uint8)
    return Dataset("u8", x, x[:10], kind="image")


def clustered(m: int, d: int = 32, seed: int = 0, labels: bool = False):
    """m points around 50 random centres (and each one's centre, with ``labels``)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(50, d, generator=g)
    y = torch.randint(50, (m,), generator=g)
    x = centres[y] + 0.5 * torch.randn(m, d, generator=g)
    return (x, y) if labels else x


# ---- streamed embeddings -------------------------------------------------------------------
@pytest.mark.parametrize("name", ["pixels", "projection"])
def test_streamed_embeddings_equal_in_memory_ones(tmp_path, name):
    data = uint8_images(2000)
    emb = get_embedding(name, data.spec())
    emb.fit(data)
    as_float = store.as_float_images(data.x_train)
    assert torch.allclose(emb.mean.double(), as_float.flatten(1).double().mean(0), atol=1e-6)
    streamed = store.embed_stream(emb, store.train_batches(data, 300), 2000, tmp_path / "f.npy")
    assert isinstance(streamed, NpyRows) and streamed.dtype == torch.float32
    assert np.allclose(streamed, embed(emb, as_float).numpy(), atol=1e-6)


def test_streamed_embedding_holds_one_batch_of_images_as_float():
    """Fitting and embedding uint8 images never makes a tensor of more than a batch of them."""
    data = uint8_images(2000)
    emb = get_embedding("projection", data.spec())
    with LargestTensor() as spy:
        emb.fit(data)
        store.embed_stream(emb, store.train_batches(data, 128), 2000)
    assert spy.numel <= 256 * 128 < 2000 * 64 // 2


def test_dataset_giving_fewer_images_than_announced_is_refused(tmp_path):
    data = uint8_images(100)
    emb = get_embedding("pixels", data.spec())
    emb.fit(data)
    with pytest.raises(MixganError, match="gave 100 training images, not the 120"):
        store.embed_stream(emb, store.train_batches(data, 30), 120, tmp_path / "f.npy")
    assert not list(tmp_path.iterdir())  # nothing left behind


# ---- the approximate index -----------------------------------------------------------------
def test_approximate_neighbours_agree_with_exact_above_095_recall():
    """faiss IVF-Flat on 8,000 clustered 32-d points (205 cells, 20 scanned): recall@10 >= 0.95."""
    pytest.importorskip("faiss")
    x = clustered(8000)
    exact = knn(x, 10, backend="torch")[0]
    approx = knn(x, 10, backend="ivf")[0]
    assert approx.shape == exact.shape and not (approx == torch.arange(8000)[:, None]).any()
    assert recall_at_k(approx, exact) >= 0.95
    assert recall_at_k(exact, exact) == 1.0 and recall_at_k(exact.flip(1), exact) == 1.0


def test_auto_switches_to_the_approximate_index_above_the_threshold(monkeypatch):
    pytest.importorskip("faiss")
    assert resolve_method("auto", 200_000, 128) == "torch" and resolve_method("auto", 200_001, 128) == "ivf"
    assert resolve_method("auto", 10, 2) == "kdtree" and resolve_method("exact", 10 ** 7, 128) == "torch"
    assert resolve_method("faiss", 10, 128) == "ivf" and resolve_method("auto", 500, 128, threshold=100) == "ivf"
    monkeypatch.setitem(sys.modules, "faiss", None)
    with pytest.raises(MixganError, match=r"model.knn=auto at 300 instances .* pip install 'mixgan\[faiss\]'"):
        resolve_method("auto", 300, 128, threshold=100)
    assert resolve_method("exact", 300, 128, threshold=100) == "torch"


def test_icgan_above_the_threshold_trains_on_approximate_neighbours(tmp_path, digits_data):
    pytest.importorskip("faiss")
    cfg = icgan_config(tmp_path, **{"model.knn_threshold": 1000, "model.k": 5})
    model = build_model(cfg, digits_data.spec())
    model.attach_data(digits_data)
    assert model._meta_now["backend"] == "ivf" and model.neighbors.dtype == torch.int32
    exact = knn(model.features[:], 5, backend="torch")[0]
    assert recall_at_k(model.neighbors[:], exact) >= 0.9


@pytest.fixture(scope="module")
def digits_data():
    return load_dataset("digits")


# ---- tables on disk: atomic, kill -9 ---------------------------------------------------------
KILLED_WRITER = """
import os, signal, sys
import numpy as np
from mixgan.embeddings import neighbors, store

x = np.load(sys.argv[1])
real = neighbors.neighbor_blocks

def die_after_first_block(*args, **kwargs):
    for n, block in enumerate(real(*args, **kwargs)):
        if n == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        yield block

neighbors.neighbor_blocks = die_after_first_block
neighbors.QUERY_BLOCK = 100
store.InstanceStore(sys.argv[2]).neighbors(x, 5, "kdtree")
"""


def test_neighbour_table_survives_kill_9_and_is_recomputed(tmp_path):
    """A writer killed mid-table leaves only its temporary file; the next caller ignores it, removes
    it and writes the whole table; a final file cut short is recomputed, never read."""
    x = clustered(600, d=4).numpy()
    np.save(tmp_path / "x.npy", x)
    folder = tmp_path / "store"
    res = subprocess.run([sys.executable, "-c", textwrap.dedent(KILLED_WRITER), str(tmp_path / "x.npy"), str(folder)],
                         capture_output=True, text=True)
    assert res.returncode == -9, res.stderr
    final = folder / store.InstanceStore.neighbors_name(5, "kdtree")
    assert not final.exists() and len(list(folder.glob(".neighbors-*.tmp-*"))) == 1
    expected = knn(torch.from_numpy(x), 5, backend="kdtree")[0].numpy()
    table = store.InstanceStore(folder).neighbors(x, 5, "kdtree")
    assert np.array_equal(table, expected) and table.dtype == torch.int32
    assert not list(folder.glob(".neighbors-*.tmp-*"))
    final.write_bytes(final.read_bytes()[:-100])  # damaged afterwards: cut short
    assert NpyRows.open(final, (600, 5), np.int32) is None
    assert np.array_equal(store.InstanceStore(folder).neighbors(x, 5, "kdtree"), expected)


def test_run_with_damaged_instance_files_recomputes_them(tmp_path):
    run = mixgan.train(icgan_config(tmp_path, **{"train.steps": 10, "train.checkpoint_every": 10}))
    folder = run.path / "instances"
    before = np.load(folder / "neighbors.npy")
    (folder / "neighbors.npy").unlink()
    (folder / "neighbors.npy").write_bytes(b"\x93NUMPY")  # cut short
    cfg = icgan_config(tmp_path, **{"train.steps": 20, "train.checkpoint_every": 10})
    again = mixgan.train(cfg, resume=True)
    assert np.array_equal(np.load(folder / "neighbors.npy"), before)
    assert torch.equal(again.model.neighbors[:].cpu(), torch.from_numpy(before))


# ---- the encoder GM-GAN's neighbours at scale ----------------------------------------------------
def test_encoder_gmgan_above_the_threshold_finds_pixel_neighbours_in_a_projection(tmp_path, digits_data, monkeypatch):
    """Above model.knn_threshold the encoder's pixel neighbours come from a memory-mapped table of a
    128-d random projection of the centred pixels, streamed into the cache: knn never sees the
    pixels, and the table agrees with the exact neighbours of the centred pixels (measured 0.81)."""
    import mixgan.models.gmgan_encoder as gmgan_mod
    from conftest import small_config

    cfg = small_config(tmp_path, **{"data.dataset": "digits", "model.width": 8, "encoder.enabled": True,
                                    "encoder.neighbors": 5, "encoder.space": "pixels", "encoder.init": "scratch",
                                    "model.knn_threshold": 1000, "model.knn": "auto"})
    monkeypatch.setattr(gmgan_mod, "knn", lambda *a, **k: pytest.fail("neighbours searched in pixels"))
    model = build_model(cfg, digits_data.spec())
    model.attach_data(digits_data)
    assert model.neighbors.shape == (1438, 5) and model.neighbors.dtype == torch.int32
    centred = digits_data.images().flatten(1) - digits_data.images().flatten(1).mean(0)
    assert recall_at_k(model.neighbors[:], knn(centred, 5, backend="torch")[0]) >= 0.7
    b = model.batch(torch.arange(16))
    assert b.pair.shape == b.x.shape


# ---- representatives at scale ----------------------------------------------------------------
def test_streamed_representatives_cover_the_clusters_of_a_table_on_disk(tmp_path):
    """Mini-batch k-means over a table read from its file: one representative per cluster of a 50-cluster
    set (20,000 rows, read in batches of 2,000), each the member nearest its centre."""
    x, labels = clustered(20_000, d=16, seed=3, labels=True)
    x, labels = torch.nn.functional.normalize(x, dim=1).numpy(), labels.numpy()
    np.save(tmp_path / "f.npy", x)
    table = NpyRows.open(tmp_path / "f.npy")
    reps = store.streamed_representatives(table, 50, seed=0, batch=2000)
    assert len(reps) >= 48 and np.all(np.diff(reps) > 0)
    assert len(np.unique(labels[reps])) >= 45
    assert np.array_equal(reps, store.streamed_representatives(table, 50, seed=0, batch=2000))


# ---- sampling from photos -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained_icgan(tmp_path_factory):
    return mixgan.train(icgan_config(tmp_path_factory.mktemp("icgan-photos"), **{"train.steps": 10,
                                                                                   "train.checkpoint_every": 10}))


def write_photos(folder, digits_data, count: int = 3):
    """Digits test images as colour photos of other sizes (PNG and JPEG), larger than the model's 8x8."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        grey = ((digits_data.images("test")[i, 0] + 1) * 127.5).round().byte().numpy()
        im = Image.fromarray(grey).resize((16 + 8 * i, 24), Image.Resampling.NEAREST).convert("RGB")
        im.save(folder / (f"p{i}.png" if i % 2 == 0 else f"p{i}.jpg"))
    return folder


def test_cli_samples_conditioned_on_a_folder_of_photos(trained_icgan, tmp_path, cli, digits_data):
    """Photos of any size and mode are resized and centre-cropped to the model's images, embedded, and
    each one's row of the grid starts with the photo as the model sees it."""
    from PIL import Image
    from mixgan.data.photos import image_paths, read_images

    photos = write_photos(tmp_path / "photos", digits_data)
    out, grid = tmp_path / "s.npz", tmp_path / "g.png"
    code, _, err = cli("sample", trained_icgan.path, "--n", 30, "--instances", photos, "--out", out, "--grid", grid)
    assert code == 0, err
    assert set(np.load(out)["instance"].tolist()) == {0, 1, 2}
    seen = read_images(image_paths([photos]), (1, 8, 8))
    assert seen.shape == (3, 1, 8, 8) and seen.dtype == torch.uint8
    img = np.asarray(Image.open(grid))
    cell = (8 + 1) * 8
    assert img.shape[:2] == (3 * cell + 8, 10 * cell + 8)
    first = img[8:8 + 64:8, 8:8 + 64:8]
    assert np.abs(first.astype(float) - seen[0, 0].numpy()).max() <= 1
    # files listed one by one give the same instances as their folder
    code, _, err = cli("sample", trained_icgan.path, "--n", 30, "--instances", *sorted(photos.iterdir()),
                       "--out", tmp_path / "t.npz")
    assert code == 0, err
    assert np.array_equal(np.load(tmp_path / "t.npz")["x"], np.load(out)["x"])


def test_unreadable_image_is_named_in_one_line(trained_icgan, tmp_path, cli, digits_data):
    photos = write_photos(tmp_path / "photos", digits_data, count=2)
    (photos / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    code, _, err = cli("sample", trained_icgan.path, "--instances", photos, "--out", tmp_path / "s.npz")
    assert code == 2 and "broken.png: not a readable image" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    code, _, err = cli("sample", trained_icgan.path, "--instances", tmp_path / "nowhere", "--out", tmp_path / "s.npz")
    assert code == 2 and "nowhere: no such file or folder" in err


def test_api_samples_from_paths_and_arrays_like_from_their_features(trained_icgan, tmp_path, digits_data):
    from mixgan.data.photos import image_paths, read_images
    from mixgan.embeddings.store import as_float_images

    run = mixgan.load(trained_icgan.path)
    photos = write_photos(tmp_path / "photos", digits_data)
    u8 = read_images(image_paths([photos]), (1, 8, 8))
    h = run.model.embed_instances(as_float_images(u8))
    expected = run.sample(0, conditions=h, per_instance=2, seed=4)
    from_paths = run.sample(0, instances=[str(photos)], per_instance=2, seed=4)
    assert torch.equal(from_paths.x, expected.x) and from_paths.instance.tolist() == [0, 0, 1, 1, 2, 2]
    big = torch.from_numpy(np.repeat(np.repeat(u8.numpy(), 3, axis=2), 3, axis=3))  # 24 x 24 uint8
    assert torch.allclose(run.sample(0, instances=big, per_instance=2, seed=4).x, expected.x, atol=1e-2)  # bicubic
    assert torch.equal(run.sample(0, instances=as_float_images(u8), per_instance=2, seed=4).x, expected.x)
    assert run.sample(0, instances=[1, 2], per_instance=1).instance.tolist() == [1, 2]  # indices still indices


# ---- the benchmark -------------------------------------------------------------------------------
def test_scale_benchmark_smoke_run_logs_its_figures(tmp_path, monkeypatch, capsys):
    """benchmarks/icgan_scale.py at a tiny size: its results-log entry holds the recall and the times it measured."""
    pytest.importorskip("faiss")
    from benchmarks import icgan_scale

    monkeypatch.setenv("MIXGAN_RESULTS_DIR", str(tmp_path / "results"))
    assert icgan_scale.main(["--smoke", "--threads", "1", "--out", str(tmp_path / "out")]) == 0
    import json

    parts = {}
    for line in capsys.readouterr().err.strip().splitlines():
        row = json.loads(line)
        parts[row["part"]] = row
    log = (tmp_path / "results" / "icgan_scale.md").read_text()
    assert "python -m benchmarks.icgan_scale --smoke" in log
    assert f"recall@5 {parts['subset']['recall']:.4f} against the exact lists" in log
    assert f"recall@5 {parts['full']['recall']:.4f} on 40 random rows" in log
    assert parts["subset"]["recall"] >= 0.9 and parts["full"]["recall"] >= 0.9
    table = np.load(tmp_path / "out" / "store-3000-projection" / "neighbors-k5-ivf.npy")
    assert table.shape == (3000, 5) and table.dtype == np.int32


def test_synthetic_images_are_the_same_batch_by_batch():
    from benchmarks.icgan_scale import SyntheticImages

    data = SyntheticImages(2500, seed=1, batch=1000)
    batches = list(data.train_batches())
    assert [len(b) for b in batches] == [1000, 1000, 500] and batches[0].dtype == torch.uint8
    assert batches[0].shape[1:] == (3, 64, 64)
    assert torch.equal(torch.from_numpy(data.draw(1)[0]), batches[1])
    assert len(np.unique(data.draw(0)[1])) == 10


# ---- training from shards ------------------------------------------------------------------------
@pytest.fixture
def icgan_shards(tmp_path):
    from mixgan.data.pack import pack
    from test_shards import numbered_npz

    src = numbered_npz(tmp_path / "d.npz", n_train=200, n_test=20)
    pack(f"npz:{src}", tmp_path / "shards", shard_size=64)
    return tmp_path / "shards"


def test_streamed_icgan_batches_show_each_instances_neighbour(tmp_path, icgan_shards):
    """From shards the loader reads, for each instance i of a batch, one of i's k neighbours (a
    different pick per slot), and D's condition is i's features."""
    from mixgan.data.batches import BatchSource
    from mixgan.training.loop import BatchStream
    from test_shards import image_id

    data = load_dataset(f"shards:{icgan_shards}")
    cfg = icgan_config(tmp_path, **{"data.dataset": f"shards:{icgan_shards}", "model.k": 4, "train.d_steps": 2})
    model = build_model(cfg, data.spec())
    model.attach_data(data)
    order = BatchStream(200, 50, seed=0)
    loader = BatchSource(data.x_train, data.y_train, None, order, torch.device("cpu"), model.neighbours(),
                         d_steps=2, workers=0)
    picks = set()
    for b in range(3):
        rows = loader.get(b)
        batch = model.real_batch(rows)
        i = order(b)
        assert torch.equal(rows.index, i)
        shown = image_id(((rows.x + 1) * 127.5).round().to(torch.uint8))
        for ii, j in zip(i.tolist(), shown):
            row = model.neighbors[ii].tolist()
            assert j in row
            picks.add(row.index(j))
        assert torch.equal(batch.h, model.features[i])
    loader.close()
    assert picks == {0, 1, 2, 3}


def test_streamed_icgan_run_resumes_exactly(tmp_path, icgan_shards):
    """A run from shards (a DataLoader worker reading the neighbours) killed after its step-10
    checkpoint and resumed ends with the weights of an uninterrupted run."""
    from test_training import Crash, weights

    base = {"data.dataset": f"shards:{icgan_shards}", "model.k": 4, "train.steps": 20, "train.batch_size": 16,
            "data.workers": 1, "train.sample_every": 100, "train.checkpoint_every": 10}
    mixgan.train(icgan_config(tmp_path / "a", **base))
    crashed = icgan_config(tmp_path / "b", **base)
    with pytest.raises(KeyboardInterrupt):
        mixgan.train(crashed, progress=Crash())
    mixgan.train(crashed, resume=True)
    a, b = weights(tmp_path / "a" / "run"), weights(tmp_path / "b" / "run")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_selfsup_encoder_of_a_large_set_trains_on_a_uint8_subset(monkeypatch, tmp_path):
    """Above FIT_MAX images the contrastive encoder gets a seeded subset as stored (uint8), never
    the whole set as float."""
    from mixgan.embeddings import selfsup

    monkeypatch.setenv("MIXGAN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(selfsup, "FIT_MAX", 100)
    seen = []
    real = selfsup.train_encoder

    def record(x, *args, **kwargs):
        seen.append((x.dtype, len(x), kwargs["levels"]))
        return real(x, 2, 16, 8, seed=0, levels=kwargs["levels"])

    monkeypatch.setattr(selfsup, "train_encoder", record)
    data = uint8_images(300)
    emb = selfsup.SelfSupEmbedding(data.spec(), steps=2, batch_size=16, width=8)
    emb.fit(data)
    assert seen == [(torch.uint8, 100, 255)]
    assert emb(store.as_float_images(data.x_train[:4])).shape == (4, 128)


def test_exact_rows_by_blocks_equal_the_blocked_torch_search():
    """The brute force the benchmark's recall and the IVF index's short rows use: the same lists."""
    from mixgan.embeddings.neighbors import _exact_rows

    x = torch.nn.functional.normalize(clustered(3000, d=16), dim=1)
    idx, sims = _exact_rows(x.numpy(), x[:50].numpy(), 6, block=700)
    assert (idx[:, 0] == np.arange(50)).all() and (np.diff(sims, axis=1) <= 0).all()
    assert np.array_equal(idx[:, 1:], knn(x, 5, backend="torch")[0][:50].numpy())
