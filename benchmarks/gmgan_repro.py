"""The GM-GAN paper's experiments at this machine's scale; resumes where it stopped.

    python benchmarks/gmgan_repro.py --datasets digits --seeds 0,1 --steps 3000
    python benchmarks/gmgan_repro.py --datasets fashion-mnist --ks 10,20 --seeds 0 --steps 1500

For every dataset, `gan` against `gmgan` static and dynamic with K in --ks, all with the same
settings and number of steps (an equal training budget), several seeds. Each run is evaluated
(FID, IS, precision/recall, quality/diversity on the reference classifier's features) and, for
GM-GAN, clustered (test split, beside k-means); the first seed of the best GM-GAN also gets the
trade-off sweep. Results go to <out>/results.jsonl (one line per finished run: a finished run is
never redone, an unfinished one is resumed) and a Markdown table to <out>/table.md.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import mixgan
from mixgan.config import Recipe

PREVIOUS_IMAGE_RECIPE = Recipe.read("image-dcgan-ns").values
from mixgan.analysis import cluster_run, tradeoff_sweep
from mixgan.metrics.suite import evaluate_samples

METRICS = ("fid", "is", "precision", "recall", "quality", "diversity", "cluster_acc", "cluster_nmi", "kmeans_acc")


def variants(ks: list[int]) -> list[tuple[str, dict]]:
    out = [("gan", {"model.name": "gan"})]
    for dynamic in (False, True):
        for k in ks:
            name = f"gmgan-{'dynamic' if dynamic else 'static'}-K{k}"
            out.append((name, {"model.name": "gmgan", "prior.components": k, "prior.dynamic": dynamic}))
    return out


def run_one(dataset: str, name: str, values: dict, seed: int, steps: int, out: Path, n_eval: int,
            overrides: list[str]) -> dict:
    path = out / dataset / f"{name}-s{seed}"
    cfg = mixgan.build_config({**PREVIOUS_IMAGE_RECIPE, **values, "data.dataset": dataset, "train.seed": seed, "train.steps": steps,
                               "out": str(path)}, overrides=overrides)
    t0 = time.perf_counter()
    run = mixgan.train(cfg, resume=(path / "config.toml").is_file())
    seconds = time.perf_counter() - t0
    m = evaluate_samples(run.sample(n_eval, seed=seed).x, run.data, metrics=["fid", "is", "prdc", "qd"],
                         n_real=n_eval, seed=seed)
    row = {"dataset": dataset, "variant": name, "seed": seed, "steps": steps, "train_s": round(seconds, 1),
           **{k: m[k] for k in ("fid", "is", "precision", "recall", "quality", "diversity")}}
    if run.model.mixture:
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
        cells = []
        for m in METRICS:
            vals = [r[m] for r in rs if r.get(m) is not None]
            if not vals:
                cells.append("–")
            elif len(vals) == 1:
                cells.append(f"{vals[0]:.3f}")
            else:
                cells.append(f"{statistics.mean(vals):.3f} ± {statistics.stdev(vals):.3f}")
        lines.append(f"| {dataset} | {variant} | {len(rs)} | {rs[0]['steps']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="digits")
    ap.add_argument("--ks", default="5,10,20,30")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--n-eval", type=int, default=2000)
    ap.add_argument("--scales", default="0.25,0.5,0.75,1,1.5,2")
    ap.add_argument("--set", action="append", default=[], help="extra settings for every run")
    ap.add_argument("--out", default="bench-out/gmgan")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = out / "results.jsonl"
    done = [json.loads(l) for l in results.read_text().splitlines()] if results.is_file() else []
    finished = {(r["dataset"], r["variant"], r["seed"], r["steps"]) for r in done}
    ks = [int(k) for k in args.ks.split(",")]
    for dataset in args.datasets.split(","):
        for name, values in variants(ks):
            for seed in (int(s) for s in args.seeds.split(",")):
                if (dataset, name, seed, args.steps) in finished:
                    continue
                row = run_one(dataset, name, values, seed, args.steps, out, args.n_eval, args.set)
                done.append(row)
                with open(results, "a") as fh:
                    fh.write(json.dumps(row) + "\n")
                print(json.dumps(row), flush=True)
        ds_rows = [r for r in done if r["dataset"] == dataset and r["variant"].startswith("gmgan")]
        curve = out / dataset / "tradeoff.json"
        if ds_rows and not curve.is_file():
            best = max(ds_rows, key=lambda r: r.get("cluster_acc", 0))
            run = mixgan.load(out / dataset / f"{best['variant']}-s{best['seed']}")
            sweep = tradeoff_sweep(run.model, run.data, [float(s) for s in args.scales.split(",")], n=args.n_eval)
            curve.write_text(json.dumps({"variant": best["variant"], **sweep}, indent=1))
    text = table(done)
    for dataset in args.datasets.split(","):
        curve = out / dataset / "tradeoff.json"
        if curve.is_file():
            s = json.loads(curve.read_text())
            text += f"\n\nTrade-off on {dataset} ({s['variant']}):\n\n| s | quality | diversity | precision | recall | FID |\n|---|---|---|---|---|---|\n"
            text += "\n".join(f"| {sc:g} | {q:.3f} | {d:.3f} | {p:.3f} | {r:.3f} | {f:.2f} |" for sc, q, d, p, r, f in
                              zip(s["scales"], s["quality"], s["diversity"], s["precision"], s["recall"], s["fid"]))
    (out / "table.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
