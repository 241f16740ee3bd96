"""IC-GAN and the encoder GM-GAN trained from shards against the same data held in memory.

    python -m benchmarks.streamed_quality [--steps 1000] [--seeds 0,1,2] [--models icgan,gmgan]
                                          [--n 5000] [--dataset fashion-mnist] [--smoke]

The dataset is packed once into shards (its own train/test split kept); each model then trains
with its recipe (``image-icgan``, ``image-gmgan``: the encoder GM-GAN) for ``--steps`` steps per
seed, once with the images held in memory and once streamed from the shards (a DataLoader reading
each batch; IC-GAN's instance tables from files, a batch's rows at a time). The two paths draw
their batches from different random streams, so they agree as two seeds do, not bit for bit.
Scores: FID of ``--n`` samples against up to 10,000 training images (reference classifier), IC-GAN's
instance fidelity (a sample conditioned on instance i is nearest i among 1,000 random training
instances, top 10; chance 0.010), the encoder GM-GAN's clustering accuracy and NMI on the test split.

    python -m benchmarks.streamed_quality --speed [--speed-steps 200]

IC-GAN's training speed from shards against in memory instead: ``--speed-steps`` steps of each,
one after the other in fresh processes, the rate from the run's own ``stats.jsonl`` (training
steps only, after a first logged interval).

    python -m benchmarks.streamed_quality --against CHECKOUT [--steps 30]

The in-memory path against a checkout of mixgan from before the instance tables moved to files:
the same run (``--steps`` steps, seed 0) with that code and with this one, every checkpoint tensor
compared, and IC-GAN's features and neighbour table against the ones the old checkpoint held.
Each mode appends to ``benchmarks/results/streamed_quality.md``.
``--smoke``: digits, 20 steps, one seed, 200 samples (with ``--speed``: 20 steps).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from . import _harness

RECIPES = {"icgan": "image-icgan", "gmgan": "image-gmgan"}


def packed(dataset: str, data_dir: str) -> str:
    """The dataset's shards in the benchmark cache, packed once."""
    from mixgan.data import load_dataset
    from mixgan.data.pack import pack_dataset

    folder = _harness.cache_dir("streamed_quality", __file__, {"pack": dataset, "data_dir": data_dir}) / "shards"
    if not (folder / "manifest.json").is_file():
        pack_dataset(load_dataset(dataset, data_dir), folder)
    return str(folder)


def train_and_score(model: str, dataset: str, data_dir: str, seed: int, args, folder: Path) -> dict:
    import mixgan
    from mixgan.config import build_config
    from mixgan.metrics import evaluate_samples
    from mixgan.metrics.clustering import cluster_scores

    values = {"recipe": RECIPES[model], "model.name": model, "data.dataset": dataset, "data.data_dir": data_dir, "train.steps": args.steps,
              "train.seed": seed, "train.eval_every": 0, "train.sample_every": args.steps,
              "train.checkpoint_every": args.steps, "out": str(folder / "run")}
    cfg = build_config(values)
    t0 = time.perf_counter()
    run = mixgan.train(cfg)
    seconds = time.perf_counter() - t0
    s = run.sample(args.n, seed=seed + 1)
    metrics = evaluate_samples(s.x, run.data, metrics=["fid"], n_real=min(10_000, len(run.data.x_train)), seed=seed)
    result = {"train_s": round(seconds, 1), "fid": round(metrics["fid"], 2)}
    if model == "icgan":
        result["fidelity"] = round(_harness.instance_fidelity(run.model), 3)
    else:
        x, y = run.data.images("test"), run.data.y_test
        scores = cluster_scores(np.asarray(run.cluster(x)), y.cpu().numpy())
        result.update(accuracy=round(scores["accuracy"], 3), nmi=round(scores["nmi"], 3))
    return result


def quality(args) -> str:
    shards = f"shards:{packed(args.dataset, args.data_dir)}"
    rows = []
    for model in args.models.split(","):
        for path, dataset in (("memory", args.dataset), ("shards", shards)):
            for seed in args.seeds:
                key = {"model": model, "path": path, "dataset": args.dataset, "data_dir": args.data_dir,
                       "steps": args.steps, "seed": seed, "n": args.n}
                r = _harness.cached("streamed_quality", __file__, key,
                                    lambda f: train_and_score(model, dataset, args.data_dir, seed, args, f))
                rows.append({"model": model, "path": path, "seed": seed, **r})
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    lines = [f"{args.dataset}, {args.steps} steps per run, recipes {', '.join(RECIPES[m] for m in args.models.split(','))}, "
             f"{torch.get_num_threads()} threads, FID of {args.n} samples against up to 10,000 training images "
             "(reference classifier)", "",
             "| model | data path | seed | train (s) | FID | instance fidelity (chance 0.010) | clustering accuracy | NMI |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['path']} | {r['seed']} | {r['train_s']} | {r['fid']:.2f} | "
                     f"{r.get('fidelity', '–')} | {r.get('accuracy', '–')} | {r.get('nmi', '–')} |")
    lines += ["", "| model | data path | FID mean ± sd | instance fidelity mean | clustering accuracy mean ± sd |",
              "|---|---|---|---:|---|"]
    for model in args.models.split(","):
        for path in ("memory", "shards"):
            mine = [r for r in rows if r["model"] == model and r["path"] == path]
            lines.append(f"| {model} | {path} | {_spread([r['fid'] for r in mine], 2)} | "
                         f"{_mean([r.get('fidelity') for r in mine])} | {_spread([r.get('accuracy') for r in mine], 3)} |")
    return "\n".join(lines)


def _mean(values: list) -> str:
    values = [v for v in values if v is not None]
    return f"{statistics.mean(values):.3f}" if values else "–"


def _spread(values: list, digits: int) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} ± {sd:.{digits}f}"


def speed(args) -> str:
    """Steps/s of IC-GAN from shards and in memory, one process after the other."""
    shards = f"shards:{packed(args.dataset, args.data_dir)}"
    out = Path(args.out).resolve()
    rows = []
    for path, dataset in (("memory", args.dataset), ("shards", shards)):
        load = os.getloadavg()[0]
        run = train_cli(_harness.ROOT, "icgan", dataset, args.data_dir, args.speed_steps, out / f"speed-{path}",
                        extra=("--set", f"train.log_every={max(1, args.speed_steps // 10)}"))
        stats = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines() if line.strip()]
        rates = [s["it_per_s"] for s in stats[1:]] or [stats[-1]["it_per_s"]]
        rows.append({"path": path, "it_per_s": round(statistics.median(rates), 2), "load": round(load, 2)})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    mem, sh = rows[0]["it_per_s"], rows[1]["it_per_s"]
    lines = [f"IC-GAN (`image-icgan`) on {args.dataset}, {args.speed_steps} steps each, training steps/s (median of "
             f"the logged intervals after the first), OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
             "data.workers at its default", "",
             "| data path | steps/s | load average at start |", "|---|---:|---:|"]
    lines += [f"| {r['path']} | {r['it_per_s']} | {r['load']} |" for r in rows]
    lines += ["", f"shards / memory: {sh / mem:.3f}"]
    return "\n".join(lines)


def train_cli(src: Path, model: str, dataset: str, data_dir: str, steps: int, out: Path, seed: int = 0,
              extra: tuple[str, ...] = ()) -> Path:
    """Train with the mixgan package found in ``src`` (a checkout), in a fresh process, into ``out``
    (emptied first; no evaluation, one checkpoint at the end); ``extra``: more command-line options."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "mixgan", "train", "--recipe", RECIPES[model], "--model", model, "--dataset", dataset,
           "--data-dir", data_dir, "--steps", str(steps), "--device", "cpu", "--quiet", "--out", str(out),
           "--set", "train.eval_every=0", "--set", f"train.seed={seed}", "--set", f"train.sample_every={steps}",
           "--set", f"train.checkpoint_every={steps}", *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=src, env={**os.environ, "PYTHONPATH": str(src)})
    if done.returncode:
        raise SystemExit(f"training {model} on {dataset} with {src} failed:\n{done.stderr[-2000:]}")
    return out


def newest_checkpoint(run: Path) -> Path:
    return sorted((run / "checkpoints").glob("*.safetensors"))[-1]


def against(args) -> str:
    """The same runs with the code in ``--against`` (a checkout from before the streamed path) and
    with this code: which checkpoint tensors differ, and whether IC-GAN's instance tables agree."""
    from safetensors.torch import load_file

    src, out = Path(args.against).resolve(), Path(args.out).resolve()
    commit = subprocess.run(["git", "-C", str(src), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or "unknown"
    lines = [f"{args.dataset}, {args.steps} steps, seed 0, one run with the code at {commit} (`--against`) and one with "
             "this commit, same settings, each in a fresh process", "",
             "| model | tensors in both checkpoints | tensors that differ | instance features equal | neighbour table equal |",
             "|---|---:|---:|---|---|"]
    for model in args.models.split(","):
        old = load_file(str(newest_checkpoint(train_cli(src, model, args.dataset, args.data_dir, args.steps,
                                                         out / f"before-{model}"))))
        new_ckpt = newest_checkpoint(train_cli(_harness.ROOT, model, args.dataset, args.data_dir, args.steps,
                                               out / f"now-{model}"))
        new = load_file(str(new_ckpt))
        common = sorted(set(old) & set(new) - {"extra.features", "extra.neighbors", "extra.labels"})
        differ = [k for k in common if not torch.equal(old[k], new[k])]
        tables = ["–", "–"]
        folder = new_ckpt.parents[1] / "instances"
        if "extra.features" in old and (folder / "features.npy").is_file():
            tables = [str(torch.equal(old["extra.features"].float(), torch.from_numpy(np.load(folder / "features.npy")))),
                      str(torch.equal(old["extra.neighbors"].long(),
                                      torch.from_numpy(np.load(folder / "neighbors.npy")).long()))]
        lines.append(f"| {model} | {len(common)} | {len(differ)}{' (' + ', '.join(differ[:4]) + ')' if differ else ''} | "
                     f"{tables[0]} | {tables[1]} |")
        print(lines[-1], file=sys.stderr, flush=True)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(prog="python -m benchmarks.streamed_quality", description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, help="training steps (default 1000; 30 with --against)")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--models", default="icgan,gmgan")
    p.add_argument("--n", type=int, default=5000)
    p.add_argument("--dataset", default="fashion-mnist")
    _harness.add_data_dir(p)
    p.add_argument("--speed", action="store_true", help="IC-GAN's steps/s from shards against in memory instead")
    p.add_argument("--speed-steps", type=int, default=200)
    p.add_argument("--against", default="", help="a checkout of mixgan from before: compare its weights with this code's")
    p.add_argument("--out", default="bench-out/streamed_quality")
    p.add_argument("--smoke", action="store_true", help="seconds: digits, 20 steps, one seed, 200 samples")
    args = p.parse_args(argv)
    if args.smoke:
        args.dataset, args.steps, args.seeds, args.n, args.speed_steps = "digits", 20, "0", 200, 20
    args.steps = args.steps or (30 if args.against else 1000)
    args.seeds = [int(s) for s in args.seeds.split(",")]
    args.data_dir = _harness.data_dir(args.dataset, args.data_dir)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    mode, title = ((speed, "IC-GAN's steps/s from shards and in memory") if args.speed else
                   (against, "the in-memory path against the code before") if args.against else
                   (quality, "quality from shards and in memory"))
    text = mode(args)
    print(text)
    _harness.log_result("streamed_quality", text, _harness.command_line("benchmarks.streamed_quality", argv), title=title)
    return text


if __name__ == "__main__":
    main()
