"""Class-conditional models at an equal training budget: supervised GM-GAN (K = N and K = 3N), AC-GAN, cGAN.

Every model gets the same generator updates, batch size, learning rates, EMA and conv networks; the
only differences are the model's own (latent mixture and per-class D logits, an aux class head, or
the class joined to G's input and D's input). Each (model, seed) trains in its own process, then
``n`` samples (n/N per class) are scored by ``mixgan.metrics.suite.evaluate_samples``: IS and FID in
the reference classifier's space, intra-class FID, conditional accuracy and CAS.

    OMP_NUM_THREADS=1 python -m benchmarks.conditional --dataset fashion-mnist --steps 1000 --seeds 0,1 --jobs 2

Each run's scores are kept in the benchmark cache, keyed by the code version and the run's settings
(a rerun reuses finished runs); the table is appended to ``benchmarks/results/conditional.md``.
``--smoke``: digits, cgan and acgan, 20 steps, 200 samples.

``--dataset linear`` runs the vector-conditioning check instead: a cGAN trained on ``npz:`` data
with x = A c + b + diag(s) eps, c ~ U[-1, 1]^2, compared with the true conditional mean and spread
(``--dataset linear --smoke``: 20 steps).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import tempfile
import time
from pathlib import Path

from . import _harness

# name -> settings on top of the shared ones
CONFIGS = {
    # mismatch 0: these rows were measured before model.mismatch existed (the image preset now sets 1)
    "gmgan-supervised K=N": {"model.name": "gmgan-supervised", "prior.components": 10, "model.mismatch": 0.0},
    "gmgan-supervised K=3N": {"model.name": "gmgan-supervised", "prior.components": 30, "model.mismatch": 0.0},
    "gmgan-supervised sigma=1": {"model.name": "gmgan-supervised", "prior.sigma": 1.0, "model.mismatch": 0.0},
    "acgan": {"model.name": "acgan"},
    "cgan": {"model.name": "cgan", "model.mismatch": 0.0},
    # the paper's wiring on the same bodies (the previous recipe always used it)
    "cgan (concat)": {"model.name": "cgan", "model.condition": "concat", "model.mismatch": 0.0},
    # toward class fidelity (docs/conditional.md): a matching-aware D (with --recipe current, mismatch=1 and
    # sigma=1 mismatch=1 are what `mixgan train` gives), or an auxiliary class head
    "cgan mismatch=1": {"model.name": "cgan", "model.mismatch": 1.0},
    "cgan mismatch=3": {"model.name": "cgan", "model.mismatch": 3.0},
    "cgan class_weight=0.5": {"model.name": "cgan", "model.class_weight": 0.5, "model.mismatch": 0.0},
    **{f"gmgan-supervised sigma={s:g} mismatch={w:g}": {"model.name": "gmgan-supervised", "prior.sigma": s,
                                                        "model.mismatch": w}
       for s, w in ((1.0, 1.0), (1.0, 3.0), (1.0, 10.0), (0.75, 1.0))},
}
DEFAULT_CONFIGS = ["gmgan-supervised K=N", "gmgan-supervised K=3N", "acgan", "cgan"]
SHARED = {**_harness.previous_image_recipe(), "model.arch": "dcgan", "model.width": 64, "prior.latent_dim": 64, "prior.sigma": 0.5,
          "train.batch_size": 64, "train.lr_g": 2e-4, "train.lr_d": 2e-4, "train.ema": True,
          "train.ema_decay": 0.99, "train.log_every": 100}
# --recipe current: the library's own image recipe with nothing on top but the mixture's sigma, so the
# figures are what a user's defaults give
CURRENT = {"prior.sigma": 0.5, "train.log_every": 100}
# --recipe gpu: the image recipe with the batch and learning rates chosen for a GPU, trained wherever the benchmark runs
GPU = {**CURRENT, "train.batch_size": 128, "train.lr_g": 1e-3, "train.lr_d": 2e-3}
RECIPES = {"previous": SHARED, "current": CURRENT, "gpu": GPU}
METRICS = [("is", "IS ↑"), ("fid", "FID ↓"), ("intra_fid", "intra-FID ↓"),
           ("conditional_accuracy", "cond. acc. ↑"), ("cas", "CAS ↑")]


def run_one(job: dict) -> dict:
    """Train one (config, seed), sample it class by class, score it; kept in the benchmark cache."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    return _harness.cached("conditional", __file__, job, lambda folder: train_and_score(job, folder / "run"))


def train_and_score(job: dict, run_dir: Path) -> dict:
    import mixgan
    from mixgan.cli.evaluate import sample_run
    from mixgan.data import load_dataset
    from mixgan.metrics.suite import evaluate_samples

    import numpy as np

    if run_dir.exists():  # an interrupted earlier attempt
        import shutil

        shutil.rmtree(run_dir)
    recipe = RECIPES[job["recipe"]]
    values = {**recipe, **CONFIGS[job["config"]], "data.dataset": job["dataset"],
              "data.data_dir": job["data_dir"], "train.steps": job["steps"],
              "train.seed": job["seed"], "train.sample_every": job["steps"],
              "train.checkpoint_every": job["steps"], "out": str(run_dir)}
    if job["width"]:
        values["model.width"] = job["width"]
    if job["seconds"]:  # a wall-clock budget: the loop stops at max_seconds and checkpoints there
        values["train.max_seconds"] = job["seconds"]
    t0 = time.perf_counter()
    run = mixgan.train(mixgan.build_config(values))
    train_s = time.perf_counter() - t0
    data = load_dataset(job["dataset"], job["data_dir"])
    x, labels = sample_run(run, job["n"], seed=1000 + job["seed"])
    # sample_run returns the samples class by class; IS averages over contiguous splits, each of
    # which would then hold one class (IS ~ 1): shuffle samples and labels together first.
    order = np.random.default_rng(job["seed"]).permutation(len(x))
    x, labels = x[order], labels[order]
    scores = evaluate_samples(x, data, metrics="fid,is,cas", labels=labels, seed=job["seed"])
    out = {"config": job["config"], "seed": job["seed"], "steps": run.step, "train_s": round(train_s, 1),
           **{k: scores.get(k) for k, _ in METRICS}, "n_fake": scores["n_fake"], "n_real": scores["n_real"],
           "classifier_accuracy": scores.get("classifier_accuracy")}
    return out


LINEAR = {"a": [[1.0, 0.5], [-0.5, 1.0]], "b": [0.5, -0.5], "s": [0.3, 0.1], "n": 20000}
LINEAR_SETTINGS = {"model.name": "cgan", "model.width": 64, "prior.latent_dim": 2, "train.batch_size": 128,
                   "train.lr_g": 1e-3, "train.lr_d": 1e-3, "train.d_steps": 2, "train.ema": True,
                   "train.ema_decay": 0.99, "train.log_every": 100}
LINEAR_CONDITIONS = [[-0.8, 0.0], [0.0, 0.0], [0.8, -0.8], [0.8, 0.8], [-0.5, 0.9]]


def linear_block(steps: int, seeds: list[int], out: Path) -> tuple[str, list[dict]]:
    """Train a vector cGAN per seed on the linear task; a table of generated vs true mean and spread."""
    import numpy as np
    import torch

    torch.set_num_threads(1)
    import mixgan

    a, b, s = (np.array(LINEAR[k]) for k in "abs")
    rng = np.random.default_rng(0)
    c = rng.uniform(-1, 1, (LINEAR["n"], 2))
    x = c @ a.T + b + s * rng.standard_normal((LINEAR["n"], 2))
    path = out / "linear.npz"
    np.savez(path, x=x.astype(np.float32), c=c.astype(np.float32))
    lines = ["| seed | c | true mean | generated mean | true std | generated std |", "|---|---|---|---|---|---|"]
    vec = lambda v: "(" + ", ".join(f"{t:.2f}" for t in v) + ")"  # noqa: E731
    rows = []
    for seed in seeds:
        run_dir = out / f"linear-s{seed}"
        run = mixgan.train(mixgan.build_config({**LINEAR_SETTINGS, "data.dataset": f"npz:{path}", "train.seed": seed,
                                                "train.steps": steps, "train.sample_every": steps,
                                                "train.checkpoint_every": steps, "out": str(run_dir)}))
        for cond in LINEAR_CONDITIONS:
            g = run.sample(2000, cond=cond, seed=1).x.numpy()
            rows.append({"seed": seed, "c": cond, "true_mean": (a @ np.array(cond) + b).tolist(),
                         "mean": g.mean(0).tolist(), "std": g.std(0).tolist()})
            lines.append(f"| {seed} | {vec(cond)} | {vec(a @ np.array(cond) + b)} | {vec(g.mean(0))} | {vec(s)} | "
                         f"{vec(g.std(0))} |")
    return "\n".join([f"cGAN on `npz:` vectors, {steps} generator steps (2 D steps each), "
                       f"{LINEAR['n']} pairs, 2,000 samples per condition:", "", *lines]), rows


def fmt(values: list[float], digits: int) -> str:
    return _harness.mean_sd(values, f".{digits}f")


def table(results: list[dict], configs: list[str]) -> str:
    lines = ["| model | " + " | ".join(h for _, h in METRICS) + " | steps | train s/run |",
             "|---" * (len(METRICS) + 3) + "|"]
    for name in configs:
        rows = [r for r in results if r["config"] == name]
        if not rows:
            continue
        cells = []
        for key, _ in METRICS:
            vals = [r[key] for r in rows if r.get(key) is not None]
            digits = 3 if key in ("conditional_accuracy", "cas") else 2
            cells.append(fmt(vals, digits) if vals else "–")
        cells.append(fmt([r["steps"] for r in rows], 0))
        cells.append(fmt([r["train_s"] for r in rows], 0))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def per_seed(results: list[dict], configs: list[str]) -> str:
    lines = ["| model | seed | IS | cond. acc. |", "|---|---|---|---|"]
    for name in configs:
        for r in sorted((r for r in results if r["config"] == name), key=lambda r: r["seed"]):
            lines.append(f"| {name} | {r['seed']} | {r['is']:.2f} | {r['conditional_accuracy']:.3f} |")
    return "\n".join(lines)


def real_accuracy(dataset: str, data_dir: str, n: int = 10_000) -> float:
    """How often the reference classifier names the class of the first n real training images: the
    conditional accuracy a generator that copied the data would get."""
    from mixgan.data import load_dataset
    from mixgan.metrics.classifier import get_classifier

    data = load_dataset(dataset, data_dir)
    x, y = data.images("train")[:n], data.y_train[:n]
    return (get_classifier(data).probs(x).argmax(1) == y).float().mean().item()


def recipe_batch(recipe: str, dataset: str) -> int:
    """The batch size a run of ``recipe`` trains with."""
    import mixgan

    return mixgan.build_config({**RECIPES[recipe], "data.dataset": dataset, "model.name": "cgan"}).train.batch_size


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="fashion-mnist")
    _harness.add_data_dir(p)
    p.add_argument("--steps", type=int, default=1000, help="generator updates per run (the equal budget)")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--configs", default=",".join(DEFAULT_CONFIGS), help="comma list of: " + ", ".join(CONFIGS))
    p.add_argument("--width", type=int, default=0, help="conv base channels of G and D (0: the recipe's, 64 for both)")
    p.add_argument("--recipe", choices=sorted(RECIPES), default="previous",
                   help="previous: the recipe the older tables were measured with; current: the library's image preset; "
                        "gpu: the image preset as CUDA resolves it")
    p.add_argument("--seconds", type=float, default=0,
                   help="a wall-clock budget per run instead of --steps (train.max_seconds; --steps caps it)")
    p.add_argument("--n", type=int, default=5000, help="samples scored per run (n/N per class)")
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel (one process each)")
    p.add_argument("--finished-only", action="store_true",
                   help="table the (config, seed) runs already scored (in the cache); train nothing")
    p.add_argument("--smoke", action="store_true", help="seconds: digits, cgan and acgan, 20 steps, 200 samples")
    args = p.parse_args(argv)
    if args.smoke:
        args.steps, args.seeds, args.n, args.jobs = 20, "0", 200, 1
        if args.dataset != "linear":
            args.dataset, args.configs = "digits", "cgan,acgan"
    args.data_dir = _harness.data_dir(args.dataset, args.data_dir)
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        p.error(f"unknown config {unknown[0]!r}")
    seeds = [int(s) for s in args.seeds.split(",")]
    cmd = _harness.command_line("benchmarks.conditional", argv)
    if args.dataset == "linear":
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            block, rows = linear_block(args.steps, seeds, Path(tmp))
        block += f"\n\nTook {(time.perf_counter() - t0) / 60:.1f} min."
        print(block)
        _harness.log_result("conditional", block, cmd)
        return rows
    jobs = [{"config": name, "seed": seed, "dataset": args.dataset, "data_dir": args.data_dir, "steps": args.steps,
             "n": args.n, "width": args.width, "recipe": args.recipe, "seconds": args.seconds}
            for seed in seeds for name in configs]
    if args.finished_only:
        jobs = [j for j in jobs if (_harness.cache_dir("conditional", __file__, j) / "result.json").is_file()]
        if not jobs:
            p.error("no finished runs of these settings in the cache")
    t0 = time.perf_counter()
    if args.jobs > 1:
        with mp.get_context("spawn").Pool(args.jobs) as pool:
            results = []
            for r in pool.imap_unordered(run_one, jobs):
                results.append(r)
                print(json.dumps(r), flush=True)
    else:
        results = []
        for job in jobs:
            results.append(run_one(job))
            print(json.dumps(results[-1]), flush=True)
    wall = time.perf_counter() - t0
    clf_acc = next((r["classifier_accuracy"] for r in results if r.get("classifier_accuracy")), None)
    block = "\n".join([
        f"**{args.dataset}**, "
        + (f"{args.seconds:g} s of training per run (train.max_seconds), " if args.seconds
           else f"{args.steps} generator steps per run, ")
        + f"{args.recipe} recipe (batch {recipe_batch(args.recipe, args.dataset)}), conv width {args.width or 64}, "
        f"seeds {args.seeds}{' (the finished runs: see per seed)' if args.finished_only else ''}, "
        f"{args.n} samples per run ({args.n // 10} per class) scored against "
        f"{results[0]['n_real']} real training images; mean ± std over seeds"
        + (f"; reference classifier test accuracy {clf_acc:.3f}" if clf_acc else "")
        + f"; it names the class of {real_accuracy(args.dataset, args.data_dir):.3f} of the first 10,000 real "
        "training images.",
        "",
        table(results, configs),
        "",
        "Per seed:",
        "",
        per_seed(results, configs),
        "",
        f"{args.jobs} run(s) in parallel; this invocation took {wall / 60:.1f} min (finished runs are reused "
        "from the cache).",
    ])
    print(block)
    _harness.log_result("conditional", block, cmd)
    return results


if __name__ == "__main__":
    main()
