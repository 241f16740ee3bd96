"""IC-GAN at scale: streamed embeddings, neighbourhoods of a million instances, their recall.

    python -m benchmarks.icgan_scale [--size 1000000] [--subset 50000] [--k 50] [--embedding projection]
                                     [--recall-queries 1000] [--threads 2] [--out bench-out/icgan_scale]

On a synthetic set of ``--size`` 64 x 64 RGB images (drawn by :class:`SyntheticImages`: ten classes
of shape and colour at random positions, sizes and backgrounds, generated a batch at a time from
the batch's seed, so no image set is ever held or stored), each part runs in a fresh process and
reports its wall time and its peak resident memory (peak RSS, and its anonymous part: what the
process allocated, without the pages of memory-mapped files it read or wrote):

1. embed: the instance embedding of every image through ``InstanceStore.features`` (the path
   ``icgan`` training takes: fit on a stream of batches, then embedded a batch at a time into a
   float32 .npy);
2. knn on a subset: the first ``--subset`` features, exact blocked search against the faiss
   IVF-Flat index (``model.knn=faiss``): times and recall@k of the index against the exact lists;
3. knn at full size: the IVF index on all features, the M x k int32 table written a block at a time
   (``InstanceStore.neighbors``), and its recall@k on ``--recall-queries`` random rows whose exact
   lists are found by brute force over all M.

    python -m benchmarks.icgan_scale --train-shards DIR1,DIR2 [--train-steps 30] [--train-repeats 3] [--k 50]

4. instead of 1-3: peak RSS of ``mixgan train --model icgan --dataset shards:DIR`` (``--train-steps``
   steps on the CPU, the ``projection`` embedding, ``model.knn=faiss``) for each shard set made by
   ``mixgan data pack``: a first run, which embeds the images and builds the table into a fresh
   cache, then a second, which finds them there and only trains (peak RSS of the largest process,
   DataLoader workers included), ``--train-repeats`` times: the allocator makes one process's
   peak vary by a few per cent from run to run.

Appends the table to ``benchmarks/results/icgan_scale.md`` (command, commit, date, machine, load).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks._harness import command_line, log_result

RESOLUTION = 64
VERSION = 1


class SyntheticImages:
    """``count`` procedurally drawn uint8 RGB images (3 x 64 x 64) in 10 classes: shape (disc,
    square, diamond, ring, cross) x colour family (warm, cool), at a random place, size and
    shade on a random dark background with noise. Batch b is drawn from seed (seed, b), so any
    batch can be made again without the others; a dataset-like object with ``train_batches``."""

    kind = "image"
    num_classes = 10

    def __init__(self, count: int, seed: int = 0, batch: int = 1024):
        self.count, self.seed, self.batch = count, seed, batch
        self.name = f"synthetic{RESOLUTION}"
        self.y_train = None

    def spec(self):
        from mixgan.data import DataSpec

        return DataSpec(self.name, (3, RESOLUTION, RESOLUTION), 0, "image")

    def fingerprint(self) -> str:
        return hashlib.sha256(f"{VERSION}-{self.count}-{self.seed}-{self.batch}".encode()).hexdigest()[:16]

    def train_count(self) -> int:
        return self.count

    def draw(self, b: int) -> tuple[np.ndarray, np.ndarray]:
        """Batch b: (uint8 images n x 3 x 64 x 64, classes)."""
        n = min(self.batch, self.count - b * self.batch)
        rng = np.random.default_rng([self.seed, b])
        y = rng.integers(0, 10, n)
        r = RESOLUTION
        grid = np.arange(r, dtype=np.float32)
        cx, cy = (rng.uniform(0.3, 0.7, (2, n, 1, 1)) * r).astype(np.float32)
        size = (rng.uniform(0.12, 0.3, (n, 1, 1)) * r).astype(np.float32)
        mask = np.empty((n, r, r), bool)
        for shape in range(5):
            g = np.flatnonzero(y % 5 == shape)
            dx, dy, s = np.abs(grid[None, None, :] - cx[g]), np.abs(grid[None, :, None] - cy[g]), size[g]
            if shape == 0:
                mask[g] = dx * dx + dy * dy < s * s
            elif shape == 1:
                mask[g] = np.maximum(dx, dy) < s * 0.85
            elif shape == 2:
                mask[g] = dx + dy < s * 1.2
            elif shape == 3:
                d2 = dx * dx + dy * dy
                mask[g] = (d2 < (s * 1.05) ** 2) & (d2 > (s * 0.55) ** 2)
            else:
                mask[g] = (np.minimum(dx, dy) < s * 0.3) & (np.maximum(dx, dy) < s)
        warm = np.array([[230, 80, 40], [240, 200, 40], [220, 60, 150]], np.float32)
        cool = np.array([[40, 120, 230], [40, 200, 120], [120, 80, 230]], np.float32)
        palette = np.where((y // 5 == 0)[:, None, None], warm[None], cool[None])  # n x 3 x 3
        colour = palette[np.arange(n), rng.integers(0, 3, n)] * rng.uniform(0.7, 1.0, (n, 1)).astype(np.float32)
        background = rng.uniform(0, 60, (n, 3)).astype(np.float32)
        img = np.where(mask[:, None], colour[:, :, None, None], background[:, :, None, None])
        img += self.noise[rng.integers(0, len(self.noise), n)]
        return np.clip(img, 0, 255).astype(np.uint8), y

    @property
    def noise(self) -> np.ndarray:
        """64 fixed patterns of Gaussian pixel noise (std 8), one picked per image."""
        if not hasattr(self, "_noise"):
            self._noise = np.random.default_rng([self.seed, 2 ** 31]).normal(0, 8, (64, 3, RESOLUTION, RESOLUTION)).astype(np.float32)
        return self._noise

    def train_batches(self, batch_size: int | None = None):
        for b in range(-(-self.count // self.batch)):
            yield torch.from_numpy(self.draw(b)[0])


# ---- measuring a part in its own process --------------------------------------------------------
def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


class PeakMemory:
    """Peak RSS (the kernel's high-water mark) and peak anonymous RSS (sampled every 5 ms), in MB."""

    def __enter__(self):
        self.anon, self.done = _status_kb("RssAnon"), threading.Event()

        def watch():
            while not self.done.is_set():
                self.anon = max(self.anon, _status_kb("RssAnon"))
                time.sleep(0.005)

        self.thread = threading.Thread(target=watch, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join()
        self.anon = max(self.anon, _status_kb("RssAnon"))
        self.peak_mb = round(_status_kb("VmHWM") / 1024, 1)
        self.anon_mb = round(self.anon / 1024, 1)


def part_embed(args) -> dict:
    from mixgan.embeddings import get_embedding
    from mixgan.embeddings.store import InstanceStore, train_batches

    import shutil

    data = SyntheticImages(args.size, args.seed)
    emb = get_embedding(args.embedding, data.spec())
    store = InstanceStore(Path(args.out) / f"store-{args.size}-{args.embedding}")
    shutil.rmtree(store.folder, ignore_errors=True)  # measured from scratch
    t0, c0 = time.perf_counter(), time.process_time()
    with PeakMemory() as mem:
        feats = store.features(emb, lambda: emb.fit(data), lambda: train_batches(data), args.size)
    return {"part": "embed", "M": args.size, "d": int(feats.shape[1]), "seconds": round(time.perf_counter() - t0, 1),
            "cpu_s": round(time.process_time() - c0, 1),
            "peak_rss_mb": mem.peak_mb, "peak_anon_mb": mem.anon_mb,
            "features_mb": round(feats.nbytes / 2 ** 20, 1), "images_as_float_mb": round(args.size * 3 * 64 * 64 * 4 / 2 ** 20)}


def _features(args):
    from mixgan.data.rows import NpyRows

    feats = NpyRows.open(Path(args.out) / f"store-{args.size}-{args.embedding}" / "features.npy")
    if feats is None:
        raise SystemExit("run the embed part first")
    return feats


def part_subset(args) -> dict:
    from mixgan.embeddings import knn, recall_at_k

    x = torch.from_numpy(np.ascontiguousarray(_features(args)[:args.subset]))
    out = {"part": "subset", "M": len(x), "k": args.k}
    for backend in ("torch", "ivf"):
        t0, c0 = time.perf_counter(), time.process_time()
        with PeakMemory() as mem:
            idx = knn(x, args.k, backend=backend)[0]
        out[f"{backend}_s"] = round(time.perf_counter() - t0, 1)
        out[f"{backend}_cpu_s"] = round(time.process_time() - c0, 1)
        out[f"{backend}_anon_mb"] = mem.anon_mb
        out[backend] = idx
    out["recall"] = round(recall_at_k(out.pop("ivf"), out.pop("torch")), 4)
    return out


def part_full(args) -> dict:
    from mixgan.embeddings import recall_at_k
    from mixgan.embeddings.neighbors import _exact_rows, ivf_settings
    from mixgan.embeddings.store import InstanceStore

    feats = _features(args)
    m = len(feats)
    store = InstanceStore(Path(args.out) / f"store-{args.size}-{args.embedding}")
    table_path = store.folder / store.neighbors_name(args.k, "ivf")
    table_path.unlink(missing_ok=True)
    t0, c0 = time.perf_counter(), time.process_time()
    with PeakMemory() as mem:
        table = store.neighbors(feats, args.k, "ivf")
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    rng = np.random.default_rng(args.seed)
    rows = np.sort(rng.choice(m, args.recall_queries, replace=False))
    q = np.asarray(feats[rows], np.float32)
    exact_i, _ = _exact_rows(feats, q, args.k + 1)
    exact = np.stack([e[e != r][:args.k] for e, r in zip(exact_i, rows)])
    cells, probes = ivf_settings(m)
    return {"part": "full", "M": m, "k": args.k, "seconds": round(seconds, 1), "cpu_s": round(cpu, 1), "peak_rss_mb": mem.peak_mb,
            "peak_anon_mb": mem.anon_mb, "table_mb": round(table.nbytes / 2 ** 20, 1), "cells": cells,
            "probes": probes, "recall": round(recall_at_k(torch.from_numpy(np.asarray(table[rows])),
                                                          torch.from_numpy(exact)), 4),
            "recall_queries": args.recall_queries}


PARTS = {"embed": part_embed, "subset": part_subset, "full": part_full}

PEAK_PROBE = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
              "sys.stderr.write(r.stderr[-3000:]); print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def train_rss(args) -> list[dict]:
    """Peak RSS of a short icgan run from each shard set, with a cold and then a warm cache."""
    import shutil

    rows = []
    for folder in args.train_shards.split(","):
        manifest = json.loads((Path(folder) / "manifest.json").read_text())
        work = Path(args.out) / f"train-{Path(folder).name}"
        shutil.rmtree(work, ignore_errors=True)
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MIXGAN_CACHE": str(work / "cache")}
        row = {"shards": folder, "instances": int(manifest["splits"]["train"]["count"])}
        for phase in ["first"] + [f"second{i}" for i in range(args.train_repeats)]:
            cmd = [sys.executable, "-m", "mixgan", "train", "--model", "icgan", "--dataset", f"shards:{folder}",
                   "--steps", str(args.train_steps), "--device", "cpu", "--quiet", "--out", str(work / f"run-{phase}"),
                   "--set", "model.embedding=projection", "--set", f"model.k={args.k}", "--set", "model.knn=faiss",
                   "--set", f"train.checkpoint_every={args.train_steps}", "--set", f"train.sample_every={args.train_steps}"]
            t0 = time.perf_counter()
            res = subprocess.run([sys.executable, "-c", PEAK_PROBE, *cmd], capture_output=True, text=True, env=env)
            code, kib = res.stdout.split()[-2:]
            if code != "0":
                raise SystemExit(f"training from {folder} failed:\n{res.stderr}")
            row[f"{phase}_s"] = round(time.perf_counter() - t0, 1)
            row[f"{phase}_rss_mb"] = round(int(kib) / 1024, 1)
        warm = sorted(row[f"second{i}_rss_mb"] for i in range(args.train_repeats))
        row.update(second_rss_mb=warm[len(warm) // 2], second_all=warm,
                   second_s=sorted(row[f"second{i}_s"] for i in range(args.train_repeats))[len(warm) // 2])
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    return rows


def train_table(rows: list[dict], args) -> str:
    lines = [f"Peak RSS of `mixgan train --model icgan --dataset shards:DIR` for {args.train_steps} steps on the CPU "
             f"(embedding 'projection', k = {args.k}, model.knn=faiss), {args.threads} threads; the first run embeds "
             "the images and builds the neighbour table into an empty cache, the second finds them there. Wall times "
             f"depend on the machine's load (above); peak RSS does not. The second run is repeated {args.train_repeats} "
             "times (fresh processes): its median, and every value.", "",
             "| instances (train split) | first run: wall (s) | first run: peak RSS (MB) | second run: wall (s, median) | "
             "second run: peak RSS (MB, median) | second run: every peak RSS (MB) |", "|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['instances']:,} | {r['first_s']} | {r['first_rss_mb']} | {r['second_s']} | {r['second_rss_mb']} | "
                     f"{', '.join(map(str, r['second_all']))} |")
    if len(rows) > 1:
        lo, hi = rows[0]["second_rss_mb"], rows[-1]["second_rss_mb"]
        lines += ["", f"Second-run median peak RSS at {rows[-1]['instances']:,} instances against {rows[0]['instances']:,}: "
                      f"{100 * (hi - lo) / lo:+.1f} %."]
    return "\n".join(lines) + "\n"


def run_part(name: str, args, argv: list[str]) -> dict:
    if args.in_process:
        out = PARTS[name](args)
        out.pop("torch", None), out.pop("ivf", None)
        return out
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    cmd = [sys.executable, "-m", "benchmarks.icgan_scale", *argv, "--part", name]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=Path(__file__).resolve().parents[1])
    if res.returncode != 0:
        raise SystemExit(f"part {name} failed:\n{res.stderr}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def table(rows: dict, args) -> str:
    e, s, f = rows["embed"], rows["subset"], rows["full"]
    return "\n".join([
        f"Synthetic 64 x 64 RGB images (generated a batch at a time, never stored), embedding "
        f"'{args.embedding}' (d = {e['d']}), k = {args.k}, {args.threads} threads; wall times depend on "
        f"the machine's load (above), CPU time and memory do not.", "",
        "| part | instances | wall time (s) | CPU time (s, all threads) | peak RSS (MB) | peak anonymous RSS (MB) | result |",
        "|---|---:|---:|---:|---:|---:|---|",
        f"| embed (fit + embed, streamed into features.npy) | {e['M']:,} | {e['seconds']} | {e['cpu_s']} | {e['peak_rss_mb']} | "
        f"{e['peak_anon_mb']} | features {e['features_mb']} MB (the images as float32: {e['images_as_float_mb']:,} MB) |",
        f"| exact blocked kNN (subset) | {s['M']:,} | {s['torch_s']} | {s['torch_cpu_s']} | – | {s['torch_anon_mb']} | reference |",
        f"| faiss IVF-Flat kNN (subset) | {s['M']:,} | {s['ivf_s']} | {s['ivf_cpu_s']} | – | {s['ivf_anon_mb']} | "
        f"recall@{args.k} {s['recall']:.4f} against the exact lists |",
        f"| faiss IVF-Flat kNN + int32 table ({f['cells']} cells, {f['probes']} scanned) | {f['M']:,} | {f['seconds']} | "
        f"{f['cpu_s']} | {f['peak_rss_mb']} | {f['peak_anon_mb']} | table {f['table_mb']} MB; recall@{args.k} {f['recall']:.4f} on "
        f"{f['recall_queries']:,} random rows (exact lists by brute force over all {f['M']:,}) |",
    ]) + "\n"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=1_000_000)
    p.add_argument("--subset", type=int, default=50_000)
    p.add_argument("--k", type=int, default=50)
    p.add_argument("--embedding", default="projection")
    p.add_argument("--recall-queries", type=int, default=1000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="bench-out/icgan_scale")
    p.add_argument("--no-log", action="store_true", help="print the table only (no results log entry)")
    p.add_argument("--in-process", action="store_true",
                   help="run the parts in this process (quicker; peak RSS then covers all parts so far)")
    p.add_argument("--train-shards", default="", help="comma-separated shard folders: measure training's peak RSS instead")
    p.add_argument("--train-steps", type=int, default=30)
    p.add_argument("--train-repeats", type=int, default=3, help="runs of the second (tables found) phase")
    p.add_argument("--part", choices=sorted(PARTS), help=argparse.SUPPRESS)
    p.add_argument("--smoke", action="store_true", help="seconds: 3,000 instances, k = 5, in this process")
    args = p.parse_args(argv)
    if args.smoke:
        args.size, args.subset, args.k, args.recall_queries, args.in_process = 3000, 2000, 5, 40, True
    args.subset = min(args.subset, args.size)
    if args.part:
        torch.set_num_threads(args.threads)
        try:
            import faiss

            faiss.omp_set_num_threads(args.threads)
        except ImportError:
            pass
        print(json.dumps(PARTS[args.part](args)))
        return 0
    Path(args.out).mkdir(parents=True, exist_ok=True)
    if args.train_shards:
        text = train_table(train_rss(args), args)
        print(text)
        if not args.no_log:
            log_result("icgan_scale", text, command_line("benchmarks.icgan_scale", argv),
                       title="training memory from shards")
        return 0
    rows = {}
    for name in ("embed", "subset", "full"):
        rows[name] = run_part(name, args, argv)
        print(json.dumps(rows[name]), file=sys.stderr, flush=True)
    text = table(rows, args)
    print(text)
    if not args.no_log:
        log_result("icgan_scale", text, command_line("benchmarks.icgan_scale", argv),
                   title=f"neighbourhoods of {args.size:,} instances")
    return 0


if __name__ == "__main__":
    sys.exit(main())
