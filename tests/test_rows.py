"""Rows of .npy files read on demand (``mixgan.data.rows.NpyRows``): the instance tables of IC-GAN
and the encoder GM-GAN at scale, and the shards' images."""
import pickle
import sys

import numpy as np
import pytest
import torch

from mixgan.data.rows import NpyRows


@pytest.fixture
def table(tmp_path):
    a = np.random.default_rng(0).normal(size=(1000, 7)).astype(np.float32)
    np.save(tmp_path / "t.npy", a)
    return a, NpyRows(tmp_path / "t.npy")


def test_rows_read_on_demand_equal_the_array_for_every_kind_of_index(table):
    a, rows = table
    t = torch.from_numpy(a)
    assert len(rows) == 1000 and rows.shape == (1000, 7) and rows.dtype == torch.float32
    for key in (3, -1, slice(10, 20), slice(None), slice(5, 50, 7), np.array([9, 2, 2, 999]), [0, -2],
                torch.tensor([4, 1, 700])):
        assert torch.equal(rows[key], t[key]), key
    pick = torch.tensor([0, 6, 3])
    assert torch.equal(rows[torch.tensor([5, 6, 7]), pick], t[torch.tensor([5, 6, 7]), pick])
    assert torch.equal(rows[torch.tensor([5, 6]), 2], t[torch.tensor([5, 6]), 2])
    assert torch.equal(pickle.loads(pickle.dumps(rows))[[1, 2]], t[[1, 2]])  # a worker reopens the file
    with pytest.raises(IndexError):
        rows[[1000]]


def test_a_file_of_another_shape_or_cut_short_is_not_opened(table, tmp_path):
    a, _ = table
    path = tmp_path / "t.npy"
    assert NpyRows.open(path, (1000, 7), np.float32) is not None
    assert NpyRows.open(path, (1000, 8), np.float32) is None and NpyRows.open(path, (1000, 7), np.int32) is None
    data = path.read_bytes()
    path.write_bytes(data[:-4])
    assert NpyRows.open(path) is None and NpyRows.open(tmp_path / "missing.npy") is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_reading_random_rows_keeps_the_file_out_of_the_process_memory(tmp_path):
    """A training step's random rows of a large table: a memory map would leave the touched pages
    (and their fault-around neighbours) in the process's resident memory, growing with the table."""
    def rss_file_kb() -> int:
        for line in open("/proc/self/status"):
            if line.startswith("RssFile:"):
                return int(line.split()[1])
        raise AssertionError("no RssFile line")

    path = tmp_path / "big.npy"
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(250_000, 64))  # 64 MB
    out[:] = 1.0
    out.flush()
    del out
    rows = NpyRows(path)
    idx = np.random.default_rng(0).integers(0, 250_000, size=(100, 64))
    before = rss_file_kb()
    total = sum(float(rows[torch.from_numpy(i)].sum()) for i in idx)
    assert total == 100 * 64 * 64
    assert rss_file_kb() - before < 2048


def test_a_file_written_a_block_at_a_time_reads_back_as_the_array(tmp_path):
    from mixgan.data.rows import NpyWriter

    a = np.arange(60, dtype=np.int32).reshape(20, 3)
    out = NpyWriter(tmp_path / "w.npy", (20, 3), np.int32)
    for start in range(0, 20, 7):
        out[start:start + 7] = a[start:start + 7]
    with pytest.raises(ValueError, match="rows 0:2 take an array of shape"):
        out[0:2] = a[:3]
    out.close()
    assert np.array_equal(np.load(tmp_path / "w.npy"), a)
    assert np.array_equal(np.asarray(NpyRows(tmp_path / "w.npy")), a)
