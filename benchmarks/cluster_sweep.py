"""GM-GAN clustering against the prior's K and sigma and the training length; resumes where it stopped.

    OMP_NUM_THREADS=1 python benchmarks/cluster_sweep.py --dataset digits \\
        --grid 10:1.0:3000,10:0.25:3000,30:0.25:3000,50:0.25:3000 --seeds 0

Each ``K:sigma:steps`` entry trains a static ``gmgan`` with the dataset's defaults otherwise, then
clusters the test split (``mixgan.analysis.cluster_run``) and reports accuracy and NMI beside
k-means, with the diagnosis of ``gaussian_purity``: how pure each Gaussian's samples are by the
reference classifier, and how many classes the Gaussians make at all. One JSON line per finished
run goes to ``<out>/results.jsonl``; a rerun skips those. The Markdown table goes to stdout and
``<out>/table.md``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mixgan.config import Recipe  # noqa: E402

PREVIOUS_IMAGE_RECIPE = Recipe.read("image-dcgan-ns").values

DATA_DIRS = {"fashion-mnist": "/usr/share/datasets/fashion-mnist"}


def run_one(dataset: str, k: int, sigma: float, steps: int, seed: int, out: Path, extra: list[str],
            fid: bool = False) -> dict:
    import mixgan
    from mixgan.analysis import cluster_run
    from mixgan.metrics.suite import evaluate_samples

    tag = "".join(f"-{e.replace('=', '')}" for e in extra)
    path = out / f"{dataset}-K{k}-s{sigma}-n{steps}-seed{seed}{tag}"
    cfg = mixgan.build_config({**PREVIOUS_IMAGE_RECIPE, "model.name": "gmgan", "data.dataset": dataset,
                               "data.data_dir": DATA_DIRS.get(dataset, ""), "prior.components": k,
                               "prior.sigma": sigma, "train.steps": steps, "train.seed": seed,
                               "train.sample_every": steps, "out": str(path)}, overrides=extra)
    t0 = time.perf_counter()
    run = mixgan.train(cfg, resume=(path / "config.toml").is_file())
    seconds = time.perf_counter() - t0
    c = cluster_run(run.model, run.data, "test", seed=seed)
    row = {"dataset": dataset, "settings": " ".join(extra), "K": k, "sigma": sigma, "steps": steps, "seed": seed,
           "train_s": round(seconds, 1), "load": round(os.getloadavg()[0], 1),
           "method": "encoder" if getattr(run.model, "E", None) is not None else "classifier",
           "accuracy": c.scores["accuracy"], "nmi": c.scores["nmi"], "kmeans": c.kmeans["accuracy"],
           "kmeans_nmi": c.kmeans["nmi"], "purity": c.purity["purity"], "classes_covered": c.purity["classes_covered"]}
    if fid:
        row["fid"] = evaluate_samples(run.sample(5000, seed=seed).x, run.data, metrics=["fid"], n_real=5000,
                                      seed=seed)["fid"]
    return row


def table(rows: list[dict], classes: int) -> str:
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r.get("settings", ""), r["K"], r["sigma"], r["steps"]), []).append(r)
    lines = ["| settings | K | σ | steps | seeds | accuracy | NMI | mean purity | classes made | FID | "
             "k-means accuracy | k-means NMI |", "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for (settings, k, sigma, steps), rs in groups.items():
        def mean(key):
            vals = [r[key] for r in rs if key in r]
            if not vals:
                return "–"
            sd = f" ± {statistics.stdev(vals):.3f}" if len(vals) > 1 else ""
            return f"{statistics.mean(vals):.3f}{sd}"
        covered = "/".join(str(r["classes_covered"]) for r in rs)
        seeds = ",".join(str(r["seed"]) for r in rs)
        lines.append(f"| {settings or 'defaults'} | {k} | {sigma} | {steps} | {seeds} | {mean('accuracy')} | "
                     f"{mean('nmi')} | {mean('purity')} | {covered} of {classes} | {mean('fid')} | {mean('kmeans')} | "
                     f"{mean('kmeans_nmi')} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="digits")
    p.add_argument("--grid", default="10:1.0:3000,10:0.25:3000,30:0.25:3000,50:0.25:3000",
                   help="comma list of K:sigma:steps")
    p.add_argument("--seeds", default="0")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="extra setting for every run, e.g. --set model.info_weight=1")
    p.add_argument("--fid", action="store_true", help="also measure the FID of 5,000 samples")
    p.add_argument("--out", default="bench-out/cluster-sweep")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "results.jsonl"
    done = [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []
    rows = []
    t0 = time.perf_counter()
    for entry in args.grid.split(","):
        k, sigma, steps = entry.split(":")
        for seed in (int(s) for s in args.seeds.split(",")):
            key = (args.dataset, " ".join(args.set), int(k), float(sigma), int(steps), seed)
            row = next((r for r in reversed(done) if (r["dataset"], r.get("settings", ""), r["K"], r["sigma"], r["steps"],
                                            r["seed"]) == key), None)
            if row is None or (args.fid and "fid" not in row):
                row = run_one(args.dataset, *key[2:5], seed, out, args.set, args.fid)
                with log.open("a") as f:
                    f.write(json.dumps(row) + "\n")
            print(json.dumps(row), file=sys.stderr, flush=True)
            rows.append(row)
    from mixgan.data import load_dataset

    classes = load_dataset(args.dataset, DATA_DIRS.get(args.dataset, "")).num_classes
    text = (f"{args.dataset}, static gmgan, test split, mean ± std over the seeds listed; {os.cpu_count()} CPU cores, load average "
            f"{os.getloadavg()[0]:.1f} at the end; this invocation {(time.perf_counter() - t0) / 60:.1f} min\n\n"
            + table(rows, classes) + "\n")
    (out / "table.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
