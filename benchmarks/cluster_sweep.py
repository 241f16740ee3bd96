"""GM-GAN clustering against the prior's K and sigma and the training length; resumes where it stopped.

    OMP_NUM_THREADS=1 python -m benchmarks.cluster_sweep --dataset digits \\
        --grid 10:1.0:3000,10:0.25:3000,30:0.25:3000,50:0.25:3000 --seeds 0

Each ``K:sigma:steps`` entry trains a static ``gmgan`` with the dataset's defaults otherwise, then
clusters the test split (``mixgan.analysis.cluster_run``) and reports accuracy and NMI beside
k-means, with the diagnosis of ``gaussian_purity``: how pure each Gaussian's samples are by the
reference classifier, and how many classes the Gaussians make at all. Each finished run is kept in
the benchmark cache (keyed by the code version and its settings); a rerun reuses it and an
interrupted run resumes. The Markdown table is appended to ``benchmarks/results/cluster_sweep.md``.
``--smoke``: digits, K = 10, sigma 1, 20 steps.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from . import _harness


def run_one(dataset: str, data_dir: str, k: int, sigma: float, steps: int, seed: int, extra: list[str],
            fid: bool = False) -> dict:
    key = {"dataset": dataset, "K": k, "sigma": sigma, "steps": steps, "seed": seed, "settings": extra, "fid": fid}
    return _harness.cached("cluster_sweep", __file__, key,
                           lambda folder: train_and_cluster(dataset, data_dir, k, sigma, steps, seed, folder / "run",
                                                            extra, fid))


def train_and_cluster(dataset: str, data_dir: str, k: int, sigma: float, steps: int, seed: int, path: Path,
                      extra: list[str], fid: bool) -> dict:
    import mixgan
    from mixgan.analysis import cluster_run
    from mixgan.metrics.suite import evaluate_samples

    cfg = mixgan.build_config({**_harness.previous_image_recipe(), "model.name": "gmgan", "data.dataset": dataset,
                               "data.data_dir": data_dir, "prior.components": k,
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
            return _harness.mean_sd([r[key] for r in rs if key in r])
        covered = "/".join(str(r["classes_covered"]) for r in rs)
        seeds = ",".join(str(r["seed"]) for r in rs)
        lines.append(f"| {settings or 'defaults'} | {k} | {sigma} | {steps} | {seeds} | {mean('accuracy')} | "
                     f"{mean('nmi')} | {mean('purity')} | {covered} of {classes} | {mean('fid')} | {mean('kmeans')} | "
                     f"{mean('kmeans_nmi')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="digits")
    _harness.add_data_dir(p)
    p.add_argument("--grid", default="10:1.0:3000,10:0.25:3000,30:0.25:3000,50:0.25:3000",
                   help="comma list of K:sigma:steps")
    p.add_argument("--seeds", default="0")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="extra setting for every run, e.g. --set model.info_weight=1")
    p.add_argument("--fid", action="store_true", help="also measure the FID of 5,000 samples")
    p.add_argument("--smoke", action="store_true", help="seconds: digits, K = 10, sigma 1, 20 steps")
    args = p.parse_args(argv)
    if args.smoke:
        args.dataset, args.grid, args.seeds = "digits", "10:1.0:20", "0"
    folder = _harness.data_dir(args.dataset, args.data_dir)
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    rows = []
    t0 = time.perf_counter()
    for entry in args.grid.split(","):
        k, sigma, steps = entry.split(":")
        for seed in (int(s) for s in args.seeds.split(",")):
            rows.append(run_one(args.dataset, folder, int(k), float(sigma), int(steps), seed, args.set, args.fid))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    from mixgan.data import load_dataset

    classes = load_dataset(args.dataset, folder).num_classes
    text = (f"{args.dataset}, static gmgan, test split, mean ± std over the seeds listed; "
            f"this invocation {(time.perf_counter() - t0) / 60:.1f} min (finished runs reused from the cache)\n\n"
            + table(rows, classes))
    print(text)
    _harness.log_result("cluster_sweep", text, _harness.command_line("benchmarks.cluster_sweep", argv))
    return rows


if __name__ == "__main__":
    main()
