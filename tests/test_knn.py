"""Blocked cosine kNN: equal to brute force, self excluded, backends agree."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from mixgan.embeddings import neighbors as knn_mod
from mixgan.embeddings import faiss_available, knn
from mixgan.errors import MixganError


def brute_force(x, k):
    x = F.normalize(x.double(), dim=1)
    s = x @ x.T
    s.fill_diagonal_(-float("inf"))
    v, i = s.topk(k, dim=1)
    return i, v


@pytest.mark.parametrize("block", [1, 7, 64, None])
def test_blocked_torch_equals_brute_force(block):
    x = torch.randn(301, 12, generator=torch.Generator().manual_seed(1))
    idx, sims = knn(x, 9, backend="torch", block=block)
    ref_i, ref_v = brute_force(x, 9)
    assert idx.shape == (301, 9) and idx.dtype == torch.long
    assert torch.equal(idx, ref_i)
    assert torch.allclose(sims.double(), ref_v, atol=1e-5)
    assert not (idx == torch.arange(301)[:, None]).any()  # never itself
    assert (sims[:, :-1] >= sims[:, 1:]).all()  # most similar first


def test_tiny_tiles_still_exact(monkeypatch):
    """The default block follows the tile budget; a tile of a few rows gives the same answer."""
    monkeypatch.setattr(knn_mod, "TILE", 500)
    x = torch.randn(250, 5, generator=torch.Generator().manual_seed(2))
    assert torch.equal(knn(x, 4, backend="torch")[0], brute_force(x, 4)[0])


def test_cosine_not_euclidean():
    # b is far from a in Euclidean terms but points the same way: it is a's nearest by cosine
    x = torch.tensor([[1.0, 0.0], [10.0, 0.1], [0.9, 0.5], [-1.0, 0.2]])
    assert knn(x, 1, backend="torch")[0][0, 0] == 1


def test_duplicates_excluded_only_self():
    x = torch.randn(40, 6, generator=torch.Generator().manual_seed(3))
    x = torch.cat([x, x[:5]])  # rows 40..44 duplicate rows 0..4
    for backend in ["torch", "kdtree"] + (["faiss"] if faiss_available() else []):
        idx, sims = knn(x, 3, backend=backend)
        assert not (idx == torch.arange(45)[:, None]).any(), backend
        assert idx[0, 0] == 40 and idx[40, 0] == 0, backend
        assert sims[0, 0] == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("backend", ["torch", "kdtree", "faiss"])
def test_every_backend_returns_on_the_features_device(backend, device):
    if backend == "faiss" and not faiss_available():
        pytest.skip("faiss-cpu not installed")
    x = torch.randn(300, 6, generator=torch.Generator().manual_seed(6)).to(device)
    idx, sims = knn(x, 4, backend=backend)
    assert idx.device == sims.device == x.device
    assert torch.equal(idx.cpu(), knn(x.cpu(), 4, backend="torch")[0])


def test_kdtree_equals_torch_on_low_dimensional_data():
    x = torch.randn(2000, 3, generator=torch.Generator().manual_seed(4))
    a, b = knn(x, 6, backend="kdtree"), knn(x, 6, backend="torch")
    assert torch.equal(a[0], b[0])
    assert torch.allclose(a[1], b[1], atol=1e-5)


def test_faiss_backend_gives_the_exact_neighbours():
    """faiss-cpu is in the dev extras, so CI compares it with the exact blocked backend."""
    pytest.importorskip("faiss")
    x = torch.randn(1500, 32, generator=torch.Generator().manual_seed(5))
    a, b = knn(x, 10, backend="faiss"), knn(x, 10, backend="torch")
    assert torch.equal(a[0], b[0])
    assert np.allclose(a[1].numpy(), b[1].numpy(), atol=1e-5)


def test_faiss_backend_without_faiss_names_the_package(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss now raises ImportError
    assert not faiss_available()
    with pytest.raises(MixganError, match="faiss-cpu"):
        knn(torch.randn(20, 4), 3, backend="faiss")


class LargestTensor(TorchDispatchMode):
    """Records the most elements any torch operation produced (allocations included)."""

    def __init__(self):
        super().__init__()
        self.numel = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self.numel = max(self.numel, t.numel())
        return out


@pytest.mark.parametrize("block, tile", [(64, None), (None, 20_000)])
def test_blocked_knn_never_builds_an_m_by_m_matrix(monkeypatch, block, tile):
    """Every tensor any operation makes stays at a block's worth of rows (explicit or from the tile
    budget); the spy does see a brute-force M x M similarity matrix."""
    if tile:
        monkeypatch.setattr(knn_mod, "TILE", tile)
    m = 2000
    x = torch.randn(m, 16, generator=torch.Generator().manual_seed(6))
    with LargestTensor() as spy:
        idx, _ = knn(x, 5, backend="torch", block=block)
    assert spy.numel <= 64 * (m + 16) < m * m // 10
    assert torch.equal(idx, brute_force(x, 5)[0])
    with LargestTensor() as spy:
        brute_force(x, 5)
    assert spy.numel >= m * m


@pytest.mark.parametrize("args, message", [
    ((torch.randn(5, 3), 5), "k must be in"),
    ((torch.randn(5, 3), 0), "k must be in"),
    ((torch.randn(5), 2), "M x d"),
    ((torch.tensor([[1.0, float("nan")], [1.0, 2.0], [0.0, 1.0]]), 1), "NaN"),
])
def test_bad_input(args, message):
    with pytest.raises(MixganError, match=message):
        knn(*args)


def test_unknown_backend():
    with pytest.raises(MixganError, match="unknown kNN backend 'annoy'"):
        knn(torch.randn(5, 3), 2, backend="annoy")
