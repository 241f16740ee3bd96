"""The data path at scale: packing, loader throughput against the training step, peak memory.

A synthetic set drawn here (no download): RGB images of 10 classes, five shapes (disc, square,
diamond, ring, cross) in a warm or a cool colour, at a random place and size on a random dark
background, with noise. Drawn with vectorised NumPy, so a million images take minutes.

1. A folder of ``--folder-n`` JPEGs of mixed sizes (48..160 px a side, class sub-folders) is packed
   by ``mixgan data pack`` at 64 px: the folder path end to end (decode, resize, crop, shards).
2. ``--sizes`` images (default 100k and 1M) are drawn at 64 px straight into shards through the
   writer ``mixgan data pack`` uses (:class:`mixgan.data.ShardWriter`); the writer's own time
   (hashing and writing, not the drawing) is the pack time of that many images.
3. Loader throughput (images/s) at 64 px with 0, 1 and 2 workers, and the default gmgan's training
   step on the CPU on the same data (images/s it consumes).
4. Peak RSS of ``mixgan train --dataset shards:...`` (a short run) at each size, in a fresh process.

    python -m benchmarks.data                     # the full measurement (about 13 GB of disk at 1M)
    python -m benchmarks.data --smoke             # seconds: tiny sizes, in-process only (no RSS), nothing logged
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ._harness import ROOT, command_line, log_result

SHAPES = ("disc", "square", "diamond", "ring", "cross")


def draw(n: int, side: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n synthetic RGB images (uint8 n x 3 x side x side) and their classes 0..9 (shape + 5 * cool)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    shape, cool = y % 5, y // 5
    t = ((np.arange(side) + 0.5) / side).astype(np.float32)
    mask = np.empty((n, side, side), bool)
    for s in range(5):  # each shape's mask for its own images only
        sel = np.nonzero(shape == s)[0]
        r = rng.uniform(0.18, 0.32, (len(sel), 1, 1)).astype(np.float32)
        dx = t[None, None, :] - rng.uniform(0.35, 0.65, (len(sel), 1, 1)).astype(np.float32)
        dy = t[None, :, None] - rng.uniform(0.35, 0.65, (len(sel), 1, 1)).astype(np.float32)
        adx, ady = np.abs(dx), np.abs(dy)
        if s == 0:
            m = dx * dx + dy * dy < r * r
        elif s == 1:
            m = np.maximum(adx, ady) < r
        elif s == 2:
            m = adx + ady < r
        elif s == 3:
            d2 = dx * dx + dy * dy
            m = (d2 < r * r) & (d2 > (0.55 * r) ** 2)
        else:
            m = ((adx < r / 3) & (ady < r)) | ((ady < r / 3) & (adx < r))
        mask[sel] = m
    warm = np.stack([rng.integers(180, 256, n), rng.integers(40, 160, n), rng.integers(0, 60, n)], 1)
    cold = np.stack([rng.integers(0, 60, n), rng.integers(40, 200, n), rng.integers(180, 256, n)], 1)
    fg = np.where(cool[:, None] == 1, cold, warm).astype(np.int16)
    bg = rng.integers(10, 90, (n, 3)).astype(np.int16)
    img = np.where(mask[:, None], fg[:, :, None, None], bg[:, :, None, None])
    noise = np.random.default_rng(12345).integers(-12, 13, (64, 3, side, side), dtype=np.int16)  # a noise bank
    img += noise[rng.integers(0, 64, n)]
    return np.clip(img, 0, 255).astype(np.uint8), y.astype(np.int64)


def class_name(c: int) -> str:
    return f"{SHAPES[c % 5]}-{'cool' if c >= 5 else 'warm'}"


def write_folder(folder: Path, n: int, seed: int = 0) -> None:
    """n JPEGs of mixed sizes in class sub-folders."""
    from PIL import Image

    x, y = draw(n, 96, seed)
    rng = np.random.default_rng(seed + 1)
    for c in sorted(set(y.tolist())):  # a class folder without images is refused: only the classes drawn
        (folder / class_name(c)).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        w, h = (int(v) for v in rng.integers(48, 161, 2))
        im = Image.fromarray(x[i].transpose(1, 2, 0)).resize((w, h), Image.Resampling.BICUBIC)
        im.save(folder / class_name(int(y[i])) / f"{i:07d}.jpg", quality=90)


def write_shards(out: Path, n: int, chunk: int = 2000, seed: int = 0) -> float:
    """n images drawn into shards at 64 px (10% test split); returns the writer's seconds."""
    from mixgan.data import ShardWriter

    classes = [class_name(c) for c in range(10)]
    writer = ShardWriter(out, (3, 64, 64), 10_000, sorted(classes), "benchmarks/data.py synthetic")
    order = {name: i for i, name in enumerate(sorted(classes))}
    relabel = np.array([order[c] for c in classes])
    spent = 0.0
    for a in range(0, n, chunk):
        x, y = draw(min(chunk, n - a), 64, seed + a)
        split = max(1, len(x) // 10)
        t = time.perf_counter()
        writer.add("test", x[:split], relabel[y[:split]])
        writer.add("train", x[split:], relabel[y[split:]])
        spent += time.perf_counter() - t
    t = time.perf_counter()
    writer.close()
    return spent + time.perf_counter() - t


def loader_rate(folder: Path, workers: int, batches: int, batch_size: int) -> float:
    """Images/s the training batch source delivers from shards (batches in the training process, as
    floats) after 5 warm-up batches."""
    import torch

    from mixgan.data import load_dataset
    from mixgan.data.batches import BatchSource
    from mixgan.training.loop import BatchStream

    data = load_dataset(f"shards:{folder}")
    order = BatchStream(len(data.x_train), batch_size, seed=0)
    loader = BatchSource(data.x_train, data.y_train, None, order, torch.device("cpu"), workers=workers)
    for b in range(5):
        loader.get(b)
    t = time.perf_counter()
    for b in range(5, 5 + batches):
        loader.get(b)
    rate = batches * batch_size / (time.perf_counter() - t)
    loader.close()
    return rate


def train_command(folder: Path, run: Path, model: str, steps: int, workers: int, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "mixgan", "train", "--model", model, "--dataset", f"shards:{folder}",
            "--steps", str(steps), "--device", "cpu", "--out", str(run), "--quiet",
            "--set", f"data.workers={workers}", "--set", "train.sample_every=100000",
            "--set", "train.checkpoint_every=100000", "--set", "train.eval_every=0", "--set", f"train.log_every={max(1, steps // 2)}", *extra]


def peak_rss_mb(cmd: list[str]) -> float:
    """Peak RSS (MB) of the largest process of ``cmd``, run in a fresh child of a fresh process."""
    probe = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss if r.returncode == 0 else -1)")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", probe, *cmd], capture_output=True, text=True, env=env)
    kib = int(out.stdout.strip().splitlines()[-1])
    if kib < 0:
        raise RuntimeError(f"training failed: {out.stderr.strip()[-2000:]}")
    return kib / 1024


def step_rate(folder: Path, tmp: Path, steps: int, extra: dict) -> float:
    """Images/s the default gmgan's training step consumes on the CPU (the second half of the run;
    the step does not depend on the number of images, so the small folder's shards serve)."""
    import mixgan

    values = {"model.name": "gmgan", "data.dataset": f"shards:{folder}", "train.steps": steps, "train.device": "cpu",
              "train.log_every": max(1, steps // 2), "train.sample_every": 100_000, "train.checkpoint_every": 100_000,
              "train.eval_every": 0, "data.workers": 1, "out": str(tmp / "rate-run"), **extra}
    run = mixgan.train(mixgan.build_config(values))
    stats = [json.loads(line) for line in (run.path / "stats.jsonl").read_text().splitlines()]
    shutil.rmtree(run.path)
    return float(stats[-1]["samples_per_s"])


def real_check(work: Path, steps: int, width: int, n: int, say, colour: bool = False) -> str:
    """Fashion-MNIST packed at 64 px (upsampled) trains gan and gmgan from shards (``colour``: the
    synthetic folder's 64 px colour shards train gan and cgan); `mixgan evaluate` scores them
    against the reference classifier trained at 64 px."""
    from mixgan.cli import main as cli

    if colour:
        shards, models, name = work / "photos-64", ("gan", "cgan"), "the synthetic colour folder"
        if not (shards / "manifest.json").exists():
            raise RuntimeError(f"{shards}: run the benchmark with --work {work} first (it packs the folder)")
    else:
        shards, models, name = work / "fashion-64", ("gan", "gmgan"), "Fashion-MNIST"
        if not (shards / "manifest.json").exists():
            say("packing fashion-mnist at 64 px")
            if cli(["data", "pack", "fashion-mnist", str(shards), "--resolution", "64", "--quiet"]) != 0:
                raise RuntimeError("mixgan data pack fashion-mnist failed")
    lines = [f"{name} packed at 64 px, {steps} steps at model.width={width}, `mixgan evaluate --n {n}` "
             "(reference classifier trained at 64 px):", "",
             "| model | FID | precision | recall | classifier accuracy | conditional accuracy |",
             "|---|---|---|---|---|---|"]
    for model in models:
        run = work / f"{shards.name}-{model}"
        if not (run / "metrics.json").exists():
            shutil.rmtree(run, ignore_errors=True)
            say(f"training {model} on {shards.name}")
            argv = ["train", "--model", model, "--dataset", f"shards:{shards}", "--steps", str(steps), "--device", "cpu",
                    "--out", str(run), "--quiet", "--set", f"model.width={width}", "--set", "train.eval_every=0",
                    "--set", "data.workers=1"]
            if cli(argv) != 0 or cli(["evaluate", str(run), "--n", str(n), "--n-real", str(n), "--quiet",
                                      "--device", "cpu"]) != 0:
                raise RuntimeError(f"{model} on {shards.name} failed")
        m = json.loads((run / "metrics.json").read_text())
        cond = m.get("conditional_accuracy")
        lines.append(f"| {model} | {m['fid']:.1f} | {m.get('precision', float('nan')):.3f} | "
                     f"{m.get('recall', float('nan')):.3f} | {m.get('classifier_accuracy', float('nan')):.3f} | "
                     f"{'-' if cond is None else f'{cond:.3f}'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="100000,1000000", help="shard set sizes (comma-separated)")
    p.add_argument("--folder-n", type=int, default=2000, help="JPEGs in the folder that is packed")
    p.add_argument("--workers", default="0,1,2")
    p.add_argument("--batches", type=int, default=200, help="batches timed per loader measurement")
    p.add_argument("--batch-size", type=int, default=32, help="the image recipe's batch size")
    p.add_argument("--rss-steps", type=int, default=30)
    p.add_argument("--rate-steps", type=int, default=20)
    p.add_argument("--rss-model", default="gan")
    p.add_argument("--work", default="", help="folder for the data (default: a temporary one, removed)")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, nothing logged (a test)")
    p.add_argument("--real", action="store_true",
                   help="only the real-data check: Fashion-MNIST at 64 px from shards, gan and gmgan, scored")
    p.add_argument("--colour", action="store_true",
                   help="with --real: the synthetic colour folder's shards train gan and cgan instead")
    p.add_argument("--real-steps", type=int, default=300)
    p.add_argument("--real-width", type=int, default=16)
    p.add_argument("--real-n", type=int, default=2000)
    args = p.parse_args(argv)
    if args.smoke:
        args.sizes, args.folder_n, args.workers, args.batches = "300,600", 30, "0,1", 5
        args.rss_steps, args.rate_steps, args.batch_size = 2, 2, 8
    sizes = [int(s) for s in args.sizes.split(",")]
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="mixgan-bench-data-"))
    work.mkdir(parents=True, exist_ok=True)
    rows: dict = {}

    def say(what: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {what}", file=sys.stderr, flush=True)

    if args.real:
        body = real_check(work, args.real_steps, args.real_width, args.real_n, say, args.colour)
        print(body)
        path = log_result("data", body, command_line("benchmarks.data", argv if argv is not None else None),
                          title="colour: the synthetic set at 64 px from shards" if args.colour else
                          "real data: Fashion-MNIST at 64 px from shards")
        print(f"logged: {path}")
        return 0
    try:
        folder = work / "photos"
        say(f"writing {args.folder_n} JPEGs")
        t = time.perf_counter()
        write_folder(folder, args.folder_n)
        rows["folder_write_s"] = time.perf_counter() - t
        say("packing the folder")
        t = time.perf_counter()
        from mixgan.cli import main as cli

        if cli(["data", "pack", str(folder), str(work / "photos-64"), "--resolution", "64", "--quiet"]) != 0:
            raise RuntimeError("mixgan data pack failed")
        rows["folder_pack_s"] = time.perf_counter() - t
        shard_dirs = {}
        for n in sizes:
            out = work / f"shards-{n}"
            if not (out / "manifest.json").exists():
                shutil.rmtree(out, ignore_errors=True)
                say(f"drawing {n} images into shards")
                t = time.perf_counter()
                rows[f"pack_s_{n}"] = write_shards(out, n, chunk=min(2000, n))
                rows[f"draw_and_pack_s_{n}"] = time.perf_counter() - t
            shard_dirs[n] = out
        first = shard_dirs[sizes[0]]
        for w in (int(v) for v in args.workers.split(",")):
            say(f"loader, {w} workers")
            rows[f"loader_{w}"] = loader_rate(first, w, args.batches, args.batch_size)
        say("gmgan step rate")
        rows["step_rate"] = step_rate(work / "photos-64", work, args.rate_steps, {"model.width": 4} if args.smoke else {})
        for n, out in ([] if args.smoke else [("folder", work / "photos-64"), *shard_dirs.items()]):
            say(f"peak RSS at {n}")
            rows[f"rss_{n}"] = peak_rss_mb(train_command(out, work / f"rss-{n}", args.rss_model, args.rss_steps, 1,
                                                         []))
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    body = report(rows, sizes, args)
    print(body)
    if not args.smoke:
        path = log_result("data", body, command_line("benchmarks.data", argv if argv is not None else None))
        print(f"logged: {path}")
    return 0


def report(rows: dict, sizes: list[int], args) -> str:
    lines = ["Synthetic RGB set (10 classes), 64 px, batch %d; CPU, no GPU. Times and rates depend on the "
             "machine's load (above); peak RSS does not." % args.batch_size, "",
             "| measurement | value |", "|---|---|",
             f"| folder of {args.folder_n} JPEGs (48-160 px), `mixgan data pack --resolution 64` | "
             f"{rows['folder_pack_s']:.1f} s ({args.folder_n / rows['folder_pack_s']:.0f} img/s) |"]
    for n in sizes:
        if f"pack_s_{n}" in rows:
            lines.append(f"| pack {n:,} images into shards (writer: hash + write) | {rows[f'pack_s_{n}']:.1f} s "
                         f"({n / rows[f'pack_s_{n}']:,.0f} img/s; with drawing {rows[f'draw_and_pack_s_{n}']:.1f} s) |")
    for key in sorted(k for k in rows if k.startswith("loader_")):
        lines.append(f"| loader, {key.split('_')[1]} worker(s), {sizes[0]:,} images | {rows[key]:,.0f} img/s |")
    lines.append(f"| default gmgan training step on the CPU consumes | {rows['step_rate']:,.1f} img/s |")
    for n in ["folder", *sizes]:
        if f"rss_{n}" in rows:
            what = f"{args.folder_n - args.folder_n // 5:,}-image folder shards" if n == "folder" else f"{n:,}-image shards"
            lines.append(f"| peak RSS, `mixgan train --model {args.rss_model}` {args.rss_steps} steps, 1 worker, "
                         f"{what} | {rows[f'rss_{n}']:,.0f} MB |")
    if len(sizes) > 1 and f"rss_{sizes[0]}" in rows:
        a, b = rows[f"rss_{sizes[0]}"], rows[f"rss_{sizes[-1]}"]
        lines.append(f"| RSS change {sizes[0]:,} -> {sizes[-1]:,} images | {100 * (b - a) / a:+.1f} % |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
