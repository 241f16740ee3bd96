"""k nearest neighbours by cosine similarity, in blocks: never an M x M matrix in memory.

The torch path takes the query rows a block at a time, computes the block's similarities to
every row (one tile of at most ``TILE`` numbers) and keeps each row's top k. Peak memory is the
features, the M x k results and one tile: it grows with M·k (and M·d), not M². faiss
(``pip install faiss-cpu``) gives the same neighbours through an exact inner-product index, and a
k-d tree serves low-dimensional features (the toy data) far faster than either.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import MixganError

BACKENDS = ("auto", "torch", "faiss", "kdtree")
TREE_MAX_DIM = 8  # 'auto' uses a k-d tree up to this many dimensions (toy data), where it is far faster
TILE = 1 << 24  # similarities held at once by the torch path (64 MB in float32)


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _knn_torch(x: torch.Tensor, k: int, block: int, group: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-k per block of query rows without a full-width sort.

    Columns are dealt into n/``group`` groups (column c to group c mod n/group); any of a row's top
    k lies in one of its k groups with the largest maxima, so only those groups' members are ranked.
    """
    m, d = x.shape
    padded = -(-m // group) * group
    keys = torch.cat([x, x.new_zeros(padded - m, d)]) if padded > m else x
    idx = torch.empty((m, k), dtype=torch.long, device=x.device)
    sims_out = torch.empty((m, k), dtype=x.dtype, device=x.device)
    n_groups = padded // group
    kg = min(k, n_groups)
    offsets = torch.arange(group, device=x.device)
    tile = torch.empty((min(block, m), padded), dtype=x.dtype, device=x.device)  # reused: one tile alive
    for a in range(0, m, block):
        rows = min(block, m - a)
        s = torch.matmul(x[a:a + rows], keys.T, out=tile[:rows])
        s[:, m:] = -float("inf")
        s[torch.arange(rows, device=x.device), torch.arange(a, a + rows, device=x.device)] = -float("inf")
        top_groups = s.view(rows, group, n_groups).amax(1).topk(kg, dim=1).indices
        cand = (top_groups.unsqueeze(2) + offsets * n_groups).flatten(1)
        v, pos = s.gather(1, cand).topk(k, dim=1)
        idx[a:a + rows] = cand.gather(1, pos)
        sims_out[a:a + rows] = v
    return idx, sims_out


def _drop_self(idx, sims, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """From k + 1 results per row, remove the row itself (or the last one if an exact duplicate hid it)."""
    import numpy as np

    own = idx == np.arange(len(idx))[:, None]
    own[~own.any(1), -1] = True  # self not listed (exact duplicates): drop the (k+1)-th instead
    keep = ~own
    idx = idx[keep].reshape(len(idx), k)
    sims = sims[keep].reshape(len(sims), k)
    return torch.from_numpy(idx.astype(np.int64)), torch.from_numpy(sims.astype(np.float32))


def _knn_faiss(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    import faiss
    import numpy as np

    data = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
    index = faiss.IndexFlatIP(data.shape[1])
    index.add(data)
    sims, idx = index.search(data, k + 1)
    return _drop_self(idx, sims, k)


def _knn_kdtree(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact: on unit vectors Euclidean distance is a decreasing function of cosine similarity."""
    from sklearn.neighbors import KDTree

    data = x.detach().cpu().double().numpy()
    dist, idx = KDTree(data).query(data, k=k + 1)
    return _drop_self(idx, 1 - dist ** 2 / 2, k)


def knn(features: torch.Tensor, k: int, backend: str = "auto", block: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(indices, similarities), each M x k: every row's k most cosine-similar other rows, most similar first.
    Every backend returns them on the device of ``features`` (faiss and the k-d tree compute on the CPU).

    ``backend``: 'torch' (blocked, exact; ``block`` query rows at a time), 'faiss' (exact flat
    index; needs faiss-cpu), 'kdtree' (exact, for a few dimensions) or 'auto' (kdtree up to
    ``TREE_MAX_DIM`` dimensions, else torch: on 2 CPU cores the blocked torch path measured
    faster than faiss's flat index, see docs/icgan.md).
    """
    if backend not in BACKENDS:
        raise MixganError(f"unknown kNN backend '{backend}' (choose from {', '.join(BACKENDS)})")
    if features.ndim != 2:
        raise MixganError(f"kNN needs an M x d feature matrix, got shape {tuple(features.shape)}")
    m = len(features)
    if not 1 <= k < m:
        raise MixganError(f"k must be in [1, {m - 1}] for {m} instances, got {k}")
    block = max(1, TILE // m) if block is None else block
    if block < 1:
        raise MixganError(f"block must be >= 1, got {block}")
    if not torch.isfinite(features).all():
        raise MixganError("kNN features contain NaN or infinite values")
    x = F.normalize(features.float(), dim=1)
    if backend == "auto":
        backend = "kdtree" if x.shape[1] <= TREE_MAX_DIM else "torch"
    if backend == "torch":
        return _knn_torch(x, k, block)
    if backend == "faiss" and not faiss_available():
        raise MixganError("kNN backend 'faiss' needs the faiss-cpu package: pip install 'mixgan[faiss]'")
    idx, sims = (_knn_faiss if backend == "faiss" else _knn_kdtree)(x, k)  # computed on the CPU
    return idx.to(x.device), sims.to(x.device)
