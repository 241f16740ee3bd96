"""Mode coverage on the 2-D mixtures: `gan` against `gmgan`, several seeds, default settings.

    python benchmarks/toy.py [--seeds 0,1,2] [--steps N] [--out bench-out/toy]

Writes a Markdown table (modes covered of 8/25 and high-quality share per seed, and their means)
to stdout and to ``<out>/toy.md``; docs/toy.md quotes it.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import mixgan
from mixgan.data import load_dataset
from mixgan.metrics import mode_stats

COMPONENTS = {"ring": 8, "grid": 25}


def run_one(dataset: str, model: str, seed: int, steps: int | None, out: Path) -> dict:
    values = {"model.name": model, "data.dataset": dataset, "prior.components": COMPONENTS[dataset],
              "train.seed": seed, "out": str(out / f"{dataset}-{model}-s{seed}")}
    if steps:
        values["train.steps"] = steps
    if Path(values["out"], "metrics-toy.json").is_file():  # resume where the benchmark stopped
        return json.loads(Path(values["out"], "metrics-toy.json").read_text())
    cfg = mixgan.build_config(values)
    t0 = time.perf_counter()
    resume = Path(values["out"], "config.toml").is_file()
    run = mixgan.train(cfg, resume=resume)
    seconds = time.perf_counter() - t0
    data = load_dataset(dataset)
    stats = mode_stats(run.sample(2500, seed=1000 + seed).x, data.centers, data.std)
    result = {"dataset": dataset, "model": model, "seed": seed, "steps": cfg.train.steps,
              "seconds": round(seconds, 1), "modes": stats["modes"], "high_quality": stats["high_quality"],
              "kl": stats["kl"]}
    Path(values["out"], "metrics-toy.json").write_text(json.dumps(result))
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--steps", type=int, default=None, help="override the default training steps")
    ap.add_argument("--datasets", default="ring,grid")
    ap.add_argument("--models", default="gan,gmgan")
    ap.add_argument("--out", default="bench-out/toy")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    lines = ["| data | model | seed | steps | train s | modes | high quality | KL |", "|---|---|---|---|---|---|---|---|"]
    for dataset in args.datasets.split(","):
        for model in args.models.split(","):
            rows = [run_one(dataset, model, s, args.steps, out) for s in seeds]
            for r in rows:
                lines.append(f"| {dataset} | {model} | {r['seed']} | {r['steps']} | {r['seconds']} | "
                             f"{r['modes']}/{COMPONENTS[dataset]} | {100 * r['high_quality']:.1f}% | {r['kl']:.3f} |")
            mean_modes = sum(r["modes"] for r in rows) / len(rows)
            mean_hq = sum(r["high_quality"] for r in rows) / len(rows)
            lines.append(f"| {dataset} | {model} | **mean** | | | **{mean_modes:.1f}** | **{100 * mean_hq:.1f}%** | |")
    table = "\n".join(lines)
    (out / "toy.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
