"""k nearest neighbours by cosine similarity, in blocks: never an M x M matrix in memory.

The torch path takes the query rows a block at a time, computes the block's similarities to
every row (one tile of at most ``TILE`` numbers) and keeps each row's top k. Peak memory is the
features, the M x k results and one tile: it grows with M·k (and M·d), not M². faiss
(``pip install faiss-cpu``) gives the same neighbours through an exact inner-product index, and a
k-d tree serves low-dimensional features (the toy data) far faster than either.

Exact search costs O(M²·d) time. Above a size threshold (``model.knn_threshold``, 200,000 by
default) ``model.knn=auto`` switches to an approximate faiss index, ``ivf``: an inverted file of
``nlist`` k-means cells over the unit vectors, each query scanning the ``nprobe`` cells nearest
to it (IVF-Flat; on the GPU where torch sees one and faiss has GPU support). Its recall against
the exact search is measured by ``benchmarks/icgan_scale.py``. :func:`neighbor_blocks` yields the
results a block of rows at a time, so a table of any size is written without holding it whole.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import progress
from ..data.rows import NpyRows
from ..errors import MixganError

BACKENDS = ("auto", "torch", "faiss", "kdtree", "ivf")
METHODS = ("auto", "exact", "faiss")  # model.knn: exact below/approximate above the threshold, or one of them
THRESHOLD = 200_000  # model.knn_threshold's default: 'auto' uses the approximate index above this many instances
IVF_NPROBE = 20  # cells each query scans
IVF_TRAIN_PER_CELL = 39  # training points per cell for the coarse k-means (faiss's minimum)
IVF_NITER = 10  # iterations of that k-means
QUERY_BLOCK = 16384  # query rows per faiss search call
TREE_MAX_DIM = 8  # 'auto' uses a k-d tree up to this many dimensions (toy data), where it is far faster
TILE = 1 << 24  # similarities held at once by the torch path (64 MB in float32)


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def faiss_gpu() -> bool:
    """faiss with GPU support and a CUDA device torch can see."""
    try:
        import faiss
    except ImportError:
        return False
    return hasattr(faiss, "StandardGpuResources") and torch.cuda.is_available() and faiss.get_num_gpus() > 0


def _need_faiss(what: str) -> None:
    if not faiss_available():
        raise MixganError(f"{what} needs the faiss-cpu package: pip install 'mixgan[faiss]'")


def _knn_torch(x: torch.Tensor, k: int, block: int, group: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-k of every row (see :func:`_torch_blocks`), gathered into M x k tensors."""
    m = len(x)
    idx = torch.empty((m, k), dtype=torch.long, device=x.device)
    sims_out = torch.empty((m, k), dtype=x.dtype, device=x.device)
    for a, i, v in _torch_blocks(x, k, block, group):
        idx[a:a + len(i)], sims_out[a:a + len(i)] = i, v
    return idx, sims_out


def _torch_blocks(x: torch.Tensor, k: int, block: int, group: int = 16):
    """(first row, indices, similarities) of each block of query rows: exact top-k without a
    full-width sort.

    Columns are dealt into n/``group`` groups (column c to group c mod n/group); any of a row's top
    k lies in one of its k groups with the largest maxima, so only those groups' members are ranked.
    """
    m, d = x.shape
    padded = -(-m // group) * group
    keys = torch.cat([x, x.new_zeros(padded - m, d)]) if padded > m else x
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
        yield a, cand.gather(1, pos), v


def _drop_self(idx, sims, k: int, offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """From k + 1 results per row (rows ``offset``, ``offset`` + 1, ...), remove the row itself
    (or the last one if an exact duplicate hid it)."""
    import numpy as np

    own = idx == np.arange(offset, offset + len(idx))[:, None]
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


def ivf_settings(m: int, nlist: int | None = None, nprobe: int | None = None) -> tuple[int, int]:
    """(cells, cells scanned per query) for M vectors: about 4·sqrt(M) cells, each with at least
    ``IVF_TRAIN_PER_CELL`` vectors to train on; ``IVF_NPROBE`` scanned."""
    cells = nlist or max(1, min(int(4 * m ** 0.5), m // IVF_TRAIN_PER_CELL))
    return cells, min(cells, nprobe or IVF_NPROBE)


def _ivf_blocks(x, k: int, nlist: int | None = None, nprobe: int | None = None, seed: int = 0,
                block: int = QUERY_BLOCK):
    """(first row, indices, similarities) per block of rows from a faiss IVF-Flat index over the
    unit vectors ``x`` (an M x d float32 array, a memory map included). Rows where the scanned
    cells held fewer than k + 1 vectors are completed by an exact search of those rows."""
    import faiss
    import numpy as np

    m, d = x.shape
    cells, probes = ivf_settings(m, nlist, nprobe)
    quantizer = faiss.IndexFlatIP(d)
    index = faiss.IndexIVFFlat(quantizer, d, cells, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed, index.cp.niter = seed, IVF_NITER
    rng = np.random.default_rng(seed)
    n_train = min(m, cells * IVF_TRAIN_PER_CELL)
    train = np.ascontiguousarray(x[np.sort(rng.choice(m, n_train, replace=False))], dtype=np.float32)
    if faiss_gpu():
        res = faiss.StandardGpuResources()
        index = faiss.index_cpu_to_gpu(res, 0, index)
    index.train(train)
    for a in range(0, m, block):
        index.add(np.ascontiguousarray(x[a:a + block], dtype=np.float32))
    index.nprobe = probes
    for a in range(0, m, block):
        q = np.ascontiguousarray(x[a:a + block], dtype=np.float32)
        sims, idx = index.search(q, k + 1)
        short = (idx < 0).any(1)
        if short.any():
            exact = _exact_rows(x, q[short], k + 1)
            idx[short], sims[short] = exact
        idx, sims = _drop_self(idx, sims, k, offset=a)
        yield a, idx, sims


def _exact_rows(x, q, k: int, block: int = QUERY_BLOCK):
    """The exact top k of the query rows ``q`` among all rows of ``x`` (an array), by blocks of ``x``."""
    import numpy as np

    best_v = np.full((len(q), 0), -np.inf, np.float32)
    best_i = np.zeros((len(q), 0), np.int64)
    for a in range(0, len(x), block):
        s = q @ np.asarray(x[a:a + block], np.float32).T
        v = np.concatenate([best_v, s], 1)
        i = np.concatenate([best_i, np.broadcast_to(np.arange(a, a + s.shape[1]), s.shape)], 1)
        top = np.argpartition(-v, k - 1, 1)[:, :k] if v.shape[1] > k else np.argsort(-v, 1)
        best_v, best_i = np.take_along_axis(v, top, 1), np.take_along_axis(i, top, 1)
    order = np.argsort(-best_v, 1, kind="stable")
    return np.take_along_axis(best_i, order, 1), np.take_along_axis(best_v, order, 1)


def recall_at_k(found: torch.Tensor, exact: torch.Tensor) -> float:
    """Share of the exact neighbours that ``found`` lists, over all rows (order ignored)."""
    f, e = torch.as_tensor(found).long(), torch.as_tensor(exact).long()
    hits = (f.unsqueeze(2) == e.unsqueeze(1)).any(1).sum()
    return float(hits) / e.numel()


def resolve_method(method: str, m: int, d: int, threshold: int = THRESHOLD) -> str:
    """The backend ``model.knn=method`` uses for M instances of d dimensions."""
    if method not in METHODS:
        raise MixganError(f"unknown kNN method '{method}' (choose from {', '.join(METHODS)})")
    if method == "faiss" or (method == "auto" and m > threshold):
        _need_faiss(f"model.knn={method} at {m:,} instances (above model.knn_threshold={threshold:,})"
                    if method == "auto" else "model.knn=faiss")
        return "ivf"
    return "kdtree" if d <= TREE_MAX_DIM else "torch"


def neighbor_blocks(features, k: int, backend: str, block: int | None = None, seed: int = 0):
    """Every row's k most cosine-similar other rows, as (first row, M_b x k int64 indices) per
    block of rows, for ``features`` an M x d tensor or array (a memory map included; rows are
    L2-normalised here). 'ivf' reads the array in blocks; the exact backends hold it as a tensor."""
    import numpy as np

    m = len(features)
    if not 1 <= k < m:
        raise MixganError(f"k must be in [1, {m - 1}] for {m} instances, got {k}")
    if backend == "ivf":
        _need_faiss("kNN backend 'ivf'")
        unit = _UnitRows(features)
        for a, idx, _ in _ivf_blocks(unit, k, seed=seed):
            yield a, idx
        return
    x = torch.as_tensor(np.asarray(features)) if not isinstance(features, torch.Tensor) else features
    if backend == "torch":
        x = F.normalize(x.float(), dim=1)
        with announced(m, x.shape[1], k, x.device) as task:
            for a, idx, _ in _torch_blocks(x, k, max(1, TILE // m) if block is None else block):
                task.advance(len(idx))
                yield a, idx.cpu()
        return
    idx = knn(x, k, backend=backend)[0]
    for a in range(0, m, QUERY_BLOCK):
        yield a, idx[a:a + QUERY_BLOCK].cpu()


class _UnitRows:
    """Row slices of an M x d array, L2-normalised as float32 when read."""

    def __init__(self, x):
        self.x, self.shape = x, tuple(x.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows):
        import numpy as np

        v = self.x[rows]
        v = v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
        v = v.astype(np.float32)
        return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def _knn_ivf(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    m = len(x)
    idx = torch.empty((m, k), dtype=torch.long)
    sims = torch.empty((m, k), dtype=torch.float32)
    for a, i, v in _ivf_blocks(_UnitRows(x), k):
        idx[a:a + len(i)], sims[a:a + len(i)] = i, v
    return idx, sims


def _knn_kdtree(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact: on unit vectors Euclidean distance is a decreasing function of cosine similarity."""
    from sklearn.neighbors import KDTree

    data = x.detach().cpu().double().numpy()
    dist, idx = KDTree(data).query(data, k=k + 1)
    return _drop_self(idx, 1 - dist ** 2 / 2, k)


def knn(features: torch.Tensor, k: int, backend: str = "auto", block: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(indices, similarities), each M x k: every row's k most cosine-similar other rows, most similar first.
    ``features``: an M x d tensor, or the rows of a file (read whole). Every backend returns them
    on the device of ``features`` (faiss and the k-d tree compute on the CPU).

    ``backend``: 'torch' (blocked, exact; ``block`` query rows at a time), 'faiss' (exact flat
    index; needs faiss-cpu), 'kdtree' (exact, for a few dimensions), 'ivf' (approximate faiss
    IVF-Flat index, for large M; see :func:`ivf_settings`) or 'auto' (kdtree up to
    ``TREE_MAX_DIM`` dimensions, else torch: on 2 CPU cores the blocked torch path measured
    faster than faiss's flat index, see docs/icgan.md).
    """
    if backend not in BACKENDS:
        raise MixganError(f"unknown kNN backend '{backend}' (choose from {', '.join(BACKENDS)})")
    if isinstance(features, NpyRows):  # a table on disk (a CPU model's features): read whole
        features = features.all()
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
    with announced(m, x.shape[1], k, x.device) as task:
        if backend == "torch":
            out = _knn_torch(x, k, block)
        else:
            if backend in ("faiss", "ivf"):
                _need_faiss(f"kNN backend '{backend}'")
            idx, sims = {"faiss": _knn_faiss, "ivf": _knn_ivf, "kdtree": _knn_kdtree}[backend](x, k)  # on the CPU
            out = idx.to(x.device), sims.to(x.device)
        task.advance(m)
    return out


SECONDS_PER_PRODUCT = {"cpu": 6e-11, "cuda": 2e-12}  # one exact search costs about M * M * d of these
ANNOUNCE_SECONDS = 2.0  # searches expected to be shorter run unannounced


def search_seconds(m: int, d: int, device: torch.device | str = "cpu") -> float:
    """Roughly how long an exact search over m rows of d dimensions takes (measured: fashion-mnist's
    60,000 x 784 pixels, about 170 s on 2 CPU cores)."""
    return m * m * d * SECONDS_PER_PRODUCT.get(torch.device(device).type, SECONDS_PER_PRODUCT["cpu"])


def announced(m: int, d: int, k: int, device: torch.device | str = "cpu"):
    """A progress task for a neighbour search expected to take more than a few seconds (else a silent one)."""
    import contextlib

    eta = search_seconds(m, d, device)
    if eta < ANNOUNCE_SECONDS:
        return contextlib.nullcontext(progress.Task(None))
    return progress.task(f"finding the {k} nearest neighbours of {m:,} items", total=m, eta=eta)
