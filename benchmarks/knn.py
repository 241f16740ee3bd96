"""IC-GAN neighbourhoods at scale: time and peak memory of the k-nearest-neighbour lists.

    python -m benchmarks.knn [--sizes 15000,30000,60000] [--k 50] [--embedding projection128]
                             [--backends torch,faiss] [--threads 2] [--dataset fashion-mnist] [--smoke]

Embeds the first M training images (by default a fixed random projection of the
pixels to 128 dimensions, the width of the classifier and selfsup features: the kNN cost depends
only on M, d and k), then finds each one's k nearest others by
cosine similarity. Each (M, backend) runs in a fresh process; a thread samples the process's
resident memory every 2 ms, so "peak extra" is the most the kNN step added on top of the
features already in memory. An M x M float32 matrix is shown beside it for scale.
Appends a Markdown table to ``benchmarks/results/knn.md``. ``--smoke``: digits, M = 300, k = 5, torch.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time

from . import _harness


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def child(m: int, k: int, embedding: str, backend: str, threads: int, dataset: str, data_dir: str) -> dict:
    import torch

    torch.set_num_threads(threads)
    from mixgan.data import load_dataset
    from mixgan.embeddings import embed, get_embedding, knn

    data = load_dataset(dataset, data_dir)
    if embedding == "projection128":
        from mixgan.embeddings import register_embedding

        d = data.x_train[0].numel()
        proj = torch.randn(d, 128, generator=torch.Generator().manual_seed(0)) / d ** 0.5
        register_embedding("projection128", lambda x: (x.flatten(1) + 1) @ proj)
    x = data.x_train[:m].clone()
    data.x_train = x
    emb = get_embedding(embedding, data.spec())
    t0 = time.perf_counter()
    emb.fit(data)
    h = embed(emb, data.images())
    t_embed = time.perf_counter() - t0
    del data, emb
    try:  # hand freed heap pages back, so the kNN's own allocations show in the resident size
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    base = rss_bytes()
    peak = [base]
    done = threading.Event()

    def watch():
        while not done.is_set():
            peak[0] = max(peak[0], rss_bytes())
            time.sleep(0.002)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    t0, c0 = time.perf_counter(), time.process_time()
    idx, sims = knn(h, k, backend=backend)
    t_knn, c_knn = time.perf_counter() - t0, time.process_time() - c0
    done.set()
    watcher.join()
    peak[0] = max(peak[0], rss_bytes())
    return {"M": m, "k": k, "d": h.shape[1], "embedding": embedding, "backend": backend, "threads": threads,
            "embed_s": round(t_embed, 2), "knn_s": round(t_knn, 2), "knn_cpu_s": round(c_knn, 2),
            "peak_extra_mb": round((peak[0] - base) / 2 ** 20, 1),
            "result_mb": round((idx.numel() * idx.element_size() + sims.numel() * sims.element_size()) / 2 ** 20, 1),
            "features_mb": round(h.numel() * 4 / 2 ** 20, 1), "dense_mxm_mb": round(m * m * 4 / 2 ** 20, 1)}


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="15000,30000,60000")
    p.add_argument("--k", type=int, default=50)
    p.add_argument("--embedding", default="projection128",
                   help="pixels (d=784), projection128 (a fixed random projection of the pixels to the "
                        "128 dimensions of the classifier/selfsup features), classifier, selfsup")
    p.add_argument("--backends", default="torch,faiss")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--dataset", default="fashion-mnist")
    _harness.add_data_dir(p)
    p.add_argument("--smoke", action="store_true", help="seconds: digits, M = 300, k = 5, torch")
    p.add_argument("--child", nargs=4, metavar=("M", "K", "EMBEDDING", "BACKEND"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.smoke:
        args.dataset, args.sizes, args.k, args.backends = "digits", "300", 5, "torch"
    folder = _harness.data_dir(args.dataset, args.data_dir)
    if args.child:
        m, k, emb, backend = args.child
        print(json.dumps(child(int(m), int(k), emb, backend, args.threads, args.dataset, folder)))
        return []
    rows = []
    path = os.pathsep.join(p for p in (str(_harness.ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": path}
    for backend in args.backends.split(","):
        for m in [int(s) for s in args.sizes.split(",")]:
            cmd = [sys.executable, "-m", "benchmarks.knn", "--threads", str(args.threads), "--dataset", args.dataset,
                   "--data-dir", folder, "--child", str(m), str(args.k), args.embedding, backend]
            res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=_harness.ROOT)
            if res.returncode != 0:
                sys.exit(f"kNN of {m} with {backend} failed:\n{res.stderr[-2000:]}")
            rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    load = os.getloadavg()
    lines = [f"kNN lists, {args.dataset}, k={args.k}, embedding '{args.embedding}' (d={rows[0]['d']}), "
             f"{args.threads} threads; load average at the end {load[0]:.1f}", "",
             "| M | backend | kNN wall time (s) | kNN CPU time (s, all threads) | peak extra memory (MB) | result M·k (MB) | features M·d (MB) | dense M×M (MB) |",
             "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['M']:,} | {r['backend']} | {r['knn_s']} | {r['knn_cpu_s']} | {r['peak_extra_mb']} | {r['result_mb']} | "
                     f"{r['features_mb']} | {r['dense_mxm_mb']:,} |")
    text = "\n".join(lines)
    print(text)
    _harness.log_result("knn", text, _harness.command_line("benchmarks.knn", argv))
    return rows


if __name__ == "__main__":
    main()
