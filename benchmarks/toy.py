"""Mode coverage on the 2-D mixtures: default settings, one row per seed.

    python -m benchmarks.toy [--seeds 0-9] [--dataset ring,grid] [--models gmgan] [--steps N]
                             [--set key=value ...] [--smoke]

Trains one run per (dataset, model, seed) on one thread, one after another, and scores 2,500
samples with the Unrolled GAN / PacGAN protocol (`mixgan.metrics.mode_stats`). Prints a Markdown
table (seed, modes covered, high-quality share, KL, spread, wall time; then the worst seed and the mean)
and appends it to ``benchmarks/results/toy.md``. Runs are kept in the benchmark cache, keyed by the
code version and the run's settings: a finished run is reused and an unfinished one resumed, so an
interrupted benchmark goes on where it stopped. ``--smoke``: ring, seed 0, 30 steps.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

import mixgan
from mixgan.config import parse_override
from mixgan.data import load_dataset
from mixgan.metrics import mode_stats

from . import _harness

COMPONENTS = {"ring": 8, "grid": 25}


def parse_seeds(text: str) -> list[int]:
    """``0-9`` or ``0,3,5`` (or a mix: ``0-2,7``)."""
    seeds: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        seeds += range(int(lo), int(hi or lo) + 1)
    return seeds


def spread(x: torch.Tensor, centers: torch.Tensor, std: float) -> float:
    """RMS distance of high-quality samples to their mode, per axis, over the data's std: about 0.97
    for a perfect sampler, near 0 when each mode is drawn as a point."""
    near = torch.cdist(x.double(), centers.double()).min(1).values
    good = near[near <= 3 * std]
    return float((good.square().mean() / 2).sqrt() / std) if len(good) else float("nan")


def run_one(dataset: str, model: str, seed: int, settings: dict) -> dict:
    values = {"model.name": model, "data.dataset": dataset, "prior.components": COMPONENTS[dataset],
              **settings, "train.seed": seed, "train.device": "cpu"}
    return _harness.cached("toy", __file__, values, lambda folder: train_and_score(values, folder / "run"))


def train_and_score(values: dict, path: Path) -> dict:
    cfg = mixgan.build_config({**values, "out": str(path)})
    dataset, model, seed, settings = cfg.data.dataset, cfg.model.name, cfg.train.seed, values
    t0 = time.perf_counter()
    run = mixgan.train(cfg, resume=(path / "config.toml").is_file())
    seconds = time.perf_counter() - t0
    data = load_dataset(dataset)
    x = run.sample(2500, seed=1000 + seed).x
    stats = mode_stats(x, data.centers, data.std)
    result = {"dataset": dataset, "model": model, "seed": seed, "steps": cfg.train.steps,
              "seconds": round(seconds, 1), "modes": stats["modes"], "high_quality": stats["high_quality"],
              "kl": stats["kl"], "spread": spread(x, data.centers, data.std),
              "settings": {k: v for k, v in settings.items() if k != "train.seed"}}
    return result


def table(rows: list[dict]) -> list[str]:
    """One line per seed, then the worst seed and the mean of each (dataset, model)."""
    lines = ["| data | model | seed | steps | modes | high quality | KL | spread | wall s |", "|---|---|---|---|---|---|---|---|---|"]
    for dataset, model in dict.fromkeys((r["dataset"], r["model"]) for r in rows):
        group = [r for r in rows if (r["dataset"], r["model"]) == (dataset, model)]
        k = COMPONENTS[dataset]
        for r in group:
            lines.append(f"| {dataset} | {model} | {r['seed']} | {r['steps']} | {r['modes']}/{k} | "
                         f"{100 * r['high_quality']:.1f}% | {r['kl']:.3f} | {r['spread']:.2f} | {r['seconds']:.0f} |")
        n = len(group)
        lines.append(f"| {dataset} | {model} | **worst** | | **{min(r['modes'] for r in group)}/{k}** | "
                     f"**{100 * min(r['high_quality'] for r in group):.1f}%** | "
                     f"**{max(r['kl'] for r in group):.3f}** | | |")
        lines.append(f"| {dataset} | {model} | **mean** | | {sum(r['modes'] for r in group) / n:.1f}/{k} | "
                     f"{100 * sum(r['high_quality'] for r in group) / n:.1f}% | "
                     f"{sum(r['kl'] for r in group) / n:.3f} | {sum(r['spread'] for r in group) / n:.2f} | {sum(r['seconds'] for r in group) / n:.0f} |")
    return lines


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0-9", help="e.g. 0-9 or 0,1,2")
    ap.add_argument("--dataset", default="ring,grid", help="ring, grid or both (comma-separated)")
    ap.add_argument("--models", default="gmgan", help="gmgan, gan or both (comma-separated)")
    ap.add_argument("--steps", type=int, default=None, help="override the preset's training steps")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override any setting, as `mixgan train --set` (repeatable)")
    ap.add_argument("--smoke", action="store_true", help="seconds: ring, seed 0, 30 steps")
    args = ap.parse_args(argv)
    if args.smoke:
        args.seeds, args.dataset, args.steps = "0", "ring", 30
    torch.set_num_threads(1)
    settings = dict(parse_override(text) for text in args.set)
    if args.steps is not None:
        settings["train.steps"] = args.steps
    rows = []
    for dataset in args.dataset.split(","):
        if dataset not in COMPONENTS:
            raise SystemExit(f"error: --dataset takes ring and/or grid, got '{dataset}'")
        for model in args.models.split(","):
            for seed in parse_seeds(args.seeds):
                rows.append(run_one(dataset, model, seed, settings))
                print("|".join(table([rows[-1]])[2].split("|")[1:-1]), flush=True)
    text = "\n".join(table(rows))
    print(text)
    _harness.log_result("toy", text, _harness.command_line("benchmarks.toy", argv))
    return rows


if __name__ == "__main__":
    main()
