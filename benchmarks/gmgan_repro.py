"""The GM-GAN paper's experiments at this machine's scale; resumes where it stopped.

    python -m benchmarks.gmgan_repro --datasets digits --seeds 0,1 --steps 3000
    python -m benchmarks.gmgan_repro --datasets fashion-mnist --ks 10,20 --seeds 0 --steps 1500

For every dataset, `gan` against `gmgan` static and dynamic with K in --ks, all with the same
settings and number of steps (an equal training budget), several seeds. Each run is evaluated
(FID, IS, precision/recall, quality/diversity on the reference classifier's features) and, for
GM-GAN, clustered (test split, beside k-means); the first seed of the best GM-GAN also gets the
trade-off sweep. Every run is kept in the benchmark cache, keyed by the code version and its
settings (a finished run is reused, an unfinished one resumed); the Markdown table is appended to
``benchmarks/results/gmgan_repro.md``. ``--smoke``: digits, K = 5, seed 0, 20 steps, 200 samples.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import mixgan
from mixgan.analysis import cluster_run, tradeoff_sweep
from mixgan.metrics.suite import evaluate_samples

from . import _harness

METRICS = ("fid", "is", "precision", "recall", "quality", "diversity", "cluster_acc", "cluster_nmi", "kmeans_acc")


def variants(ks: list[int]) -> list[tuple[str, dict]]:
    out = [("gan", {"model.name": "gan"})]
    for dynamic in (False, True):
        for k in ks:
            name = f"gmgan-{'dynamic' if dynamic else 'static'}-K{k}"
            out.append((name, {"model.name": "gmgan", "prior.components": k, "prior.dynamic": dynamic}))
    return out


def run_key(dataset: str, data_dir: str, values: dict, seed: int, steps: int, n_eval: int, overrides: list[str]) -> dict:
    settings = {**_harness.previous_image_recipe(), **values, "data.dataset": dataset, "data.data_dir": data_dir,
                "train.seed": seed, "train.steps": steps}
    return {"settings": settings, "overrides": overrides, "n_eval": n_eval}


def run_one(name: str, key: dict) -> dict:
    return _harness.cached("gmgan_repro", __file__, key, lambda folder: train_and_score(name, key, folder / "run"))


def train_and_score(name: str, key: dict, path: Path) -> dict:
    cfg = mixgan.build_config({**key["settings"], "out": str(path)}, overrides=key["overrides"])
    dataset, seed, steps, n_eval = cfg.data.dataset, cfg.train.seed, cfg.train.steps, key["n_eval"]
    t0 = time.perf_counter()
    run = mixgan.train(cfg, resume=(path / "config.toml").is_file())
    seconds = time.perf_counter() - t0
    m = evaluate_samples(run.sample(n_eval, seed=seed).x, run.data, metrics=["fid", "is", "prdc", "qd"],
                         n_real=n_eval, seed=seed)
    row = {"dataset": dataset, "variant": name, "seed": seed, "steps": steps, "train_s": round(seconds, 1),
           **{k: m[k] for k in ("fid", "is", "precision", "recall", "quality", "diversity")}}
    if run.model.has_components:
        c = cluster_run(run.model, run.data, "test", seed=seed)
        row.update(cluster_acc=c.scores["accuracy"], cluster_nmi=c.scores["nmi"], kmeans_acc=c.kmeans["accuracy"])
    return row


def table(rows: list[dict]) -> str:
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["variant"]), []).append(r)
    head = "| data | model | seeds | steps | " + " | ".join(METRICS) + " |"
    lines = [head, "|" + "---|" * (4 + len(METRICS))]
    for (dataset, variant), rs in groups.items():
        cells = [_harness.mean_sd([r[m] for r in rs if r.get(m) is not None]) for m in METRICS]
        lines.append(f"| {dataset} | {variant} | {len(rs)} | {rs[0]['steps']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="digits")
    _harness.add_data_dir(ap)
    ap.add_argument("--ks", default="5,10,20,30")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--n-eval", type=int, default=2000)
    ap.add_argument("--scales", default="0.25,0.5,0.75,1,1.5,2")
    ap.add_argument("--set", action="append", default=[], help="extra settings for every run")
    ap.add_argument("--smoke", action="store_true", help="seconds: digits, K = 5, seed 0, 20 steps, 200 samples")
    args = ap.parse_args(argv)
    if args.smoke:
        args.datasets, args.ks, args.seeds, args.steps, args.n_eval, args.scales = "digits", "5", "0", 20, 200, "0.5,1"
    ks = [int(k) for k in args.ks.split(",")]
    rows, curves = [], {}
    for dataset in args.datasets.split(","):
        folder = _harness.data_dir(dataset, args.data_dir)
        keys = {}
        for name, values in variants(ks):
            for seed in (int(s) for s in args.seeds.split(",")):
                keys[name, seed] = run_key(dataset, folder, values, seed, args.steps, args.n_eval, args.set)
                rows.append(run_one(name, keys[name, seed]))
                print(json.dumps(rows[-1]), flush=True)
        mixtures = [r for r in rows if r["dataset"] == dataset and r["variant"].startswith("gmgan")]
        if mixtures:
            best = max(mixtures, key=lambda r: r.get("cluster_acc", 0))
            run = mixgan.load(_harness.cache_dir("gmgan_repro", __file__, keys[best["variant"], best["seed"]]) / "run")
            scales = [float(s) for s in args.scales.split(",")]
            curves[dataset] = _harness.cached(
                "gmgan_repro", __file__, {"tradeoff": keys[best["variant"], best["seed"]], "scales": scales},
                lambda _: {"variant": best["variant"], **tradeoff_sweep(run.model, run.data, scales, n=args.n_eval)})
    text = table(rows)
    for dataset, s in curves.items():
        text += (f"\n\nTrade-off on {dataset} ({s['variant']}):\n\n| s | quality | diversity | precision | recall | FID |"
                 "\n|---|---|---|---|---|---|\n")
        text += "\n".join(f"| {sc:g} | {q:.3f} | {d:.3f} | {p:.3f} | {r:.3f} | {f:.2f} |" for sc, q, d, p, r, f in
                          zip(s["scales"], s["quality"], s["diversity"], s["precision"], s["recall"], s["fid"]))
    print(text)
    _harness.log_result("gmgan_repro", text, _harness.command_line("benchmarks.gmgan_repro", argv))
    return {"rows": rows, "tradeoff": curves}


if __name__ == "__main__":
    main()
