"""IC-GAN against the plain GAN and GM-GAN on fashion-mnist, at an equal training budget.

    python -m benchmarks.icgan [--steps 1000] [--batch 64] [--width 32] [--embedding classifier]
                               [--models icgan,gan,gmgan] [--n 5000] [--dataset fashion-mnist] [--smoke]

Each model trains with the same steps, batch size, DCGAN bodies and learning rates (one process,
``OMP_NUM_THREADS`` threads), then draws ``--n`` samples (IC-GAN: instances drawn uniformly from
the stored ones). The reference classifier's features give FID, precision, recall, density and
coverage against 10,000 training images. Instance fidelity (IC-GAN only): for 1,000 random
training instances, one sample each; a hit when the sample's embedding is among the 10 nearest of
its own conditioning instance out of those 1,000 (chance: 1%); the same for 1,000 test-split images
the model never saw (transfer to unseen instances). A finished model's numbers are kept in the
benchmark cache (keyed by the code version and the arguments) and reused when the benchmark is run
again. Appends a Markdown table to ``benchmarks/results/icgan.md``. ``--smoke``: digits, icgan and
gan, 20 steps, 200 samples.

    python -m benchmarks.icgan --toy [--steps 2000] [--seed 0] [--instances-per-mode 20] [--smoke]

The toy claim instead: IC-GAN on ``grid`` (the settings of tests/test_icgan.py), conditioned on
``--instances-per-mode`` random training points of each of the 25 modes, 100 samples each: the
share within 3 std of the conditioning point's mode, per mode and overall, and split by how far
the instance itself lies from its mode's centre (appended to ``benchmarks/results/icgan.md``). A
finished run with the same steps and seed is measured again rather than retrained. ``--toy --smoke``:
30 steps, 2 instances per mode.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from . import _harness


def run_model(name: str, args) -> dict:
    key = {"model": name, **{k: getattr(args, k) for k in ("dataset", "data_dir", "steps", "batch", "width", "seed", "n")},
           **({"embedding": args.embedding, "k": args.k} if name == "icgan" else {})}
    return _harness.cached("icgan", __file__, key, lambda folder: train_and_score(name, args, folder))


def train_and_score(name: str, args, folder: Path) -> dict:
    import mixgan
    from mixgan.metrics import evaluate_samples

    values = {**_harness.previous_image_recipe(), "model.name": name, "data.dataset": args.dataset,
              "data.data_dir": args.data_dir, "model.width": args.width,
              "train.steps": args.steps, "train.batch_size": args.batch, "train.seed": args.seed,
              "train.sample_every": args.steps, "train.checkpoint_every": args.steps, "train.log_every": 100,
              "out": str(folder / "run")}
    if name == "icgan":
        values.update({"model.embedding": args.embedding, "model.k": args.k})
    if name == "gmgan":
        values["prior.components"] = 10
    cfg = mixgan.build_config(values)
    t0 = time.perf_counter()
    run = mixgan.train(cfg, resume=Path(values["out"], "config.toml").is_file())
    seconds = time.perf_counter() - t0
    s = run.sample(args.n, seed=args.seed + 1)
    metrics = evaluate_samples(s.x, run.data, metrics=["fid", "prdc"], n_real=min(10_000, len(run.data.x_train)),
                               seed=args.seed)
    result = {"model": name, "steps": args.steps, "batch": args.batch, "width": args.width,
              "train_s": round(seconds, 1), "fid": metrics["fid"],
              **{k: metrics[k] for k in ("precision", "recall", "density", "coverage")}}
    if name == "icgan":
        result["embedding"] = args.embedding
        result["k"] = args.k
        result["instance_fidelity"] = _harness.instance_fidelity(run.model)
        result["instance_fidelity_unseen"] = _harness.instance_fidelity(run.model, images=run.data.images("test"))
    return result


def toy(args) -> tuple[str, dict]:
    import mixgan

    path = _harness.cache_dir("icgan", __file__, {"toy": True, "steps": args.steps, "seed": args.seed}) / "run"
    cfg = mixgan.build_config({"model.name": "icgan", "data.dataset": "grid", "train.steps": args.steps,
                               "train.d_steps": 2, "train.ema": True, "train.ema_decay": 0.99,
                               "prior.latent_dim": 2, "train.seed": args.seed, "train.sample_every": args.steps,
                               "train.checkpoint_every": args.steps, "out": str(path)})
    t0 = time.perf_counter()
    try:  # a finished run of the same settings is measured again, not retrained
        run = mixgan.load(path, step=args.steps)
        trained = "reused a finished run"
    except mixgan.MixganError:
        run = mixgan.train(cfg)
        trained = f"trained in {time.perf_counter() - t0:.0f} s"
    from mixgan.metrics.toy import conditioned_mode_share

    data = run.data
    per = args.instances_per_mode
    share = conditioned_mode_share(run, per_mode=per, per_instance=100, seed=args.seed)
    chosen, near, per_mode = share["chosen"], share["near"], share["per_mode"]
    # the instance's own place in its mode: samples follow the instance, so one near the 3-std edge
    # has many of its samples beyond it
    offset = (data.x_train[chosen] - data.centers[data.y_train[chosen]]).norm(dim=1) / data.std
    per_instance = near.view(len(chosen), 100).mean(1)
    inner = offset <= 2
    from mixgan.embeddings import knn

    cross = {}
    for what, feats in (("pixels embedding", run.model.features), ("raw coordinates", data.x_train)):
        nbrs = knn(feats, 5)[0]
        cross[what] = float((data.y_train[nbrs] != data.y_train[:, None]).float().mean())
    lines = [f"grid, IC-GAN ({args.steps} steps, d_steps 2, EMA 0.99, embedding pixels, k 5, seed {args.seed}); "
             f"{trained}", "",
             f"conditioned on {per} random training points of each mode, 100 samples each; share of samples within "
             f"3 std of the conditioning mode: overall {float(near.mean()):.3f}, worst mode {min(per_mode):.2f}, "
             f"modes at >= 0.9: {sum(p >= 0.9 for p in per_mode)}/25", "",
             "per mode (row-major over the 5x5 grid): " + " ".join(f"{p:.2f}" for p in per_mode), "",
             f"by the instance's own distance from its mode's centre: within 2 std ({int(inner.sum())} instances) "
             f"{float(per_instance[inner].mean()):.3f}, beyond 2 std ({int((~inner).sum())}) "
             f"{float(per_instance[~inner].mean()):.3f}; worst instance {float(per_instance.min()):.2f} "
             f"(at {float(offset[per_instance.argmin()]):.2f} std)", "",
             "neighbours (k = 5, cosine) in another mode than their instance: "
             + ", ".join(f"{k} {v:.1%}" for k, v in cross.items())]
    return "\n".join(lines), {"overall": float(near.mean()), "worst_mode": min(per_mode), "per_mode": per_mode}


def main(argv: list[str] | None = None) -> list[dict] | dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, help="training steps (default 1000; 2000 with --toy)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--embedding", default="classifier")
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--models", default="icgan,gan,gmgan")
    p.add_argument("--n", type=int, default=5000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dataset", default="fashion-mnist")
    _harness.add_data_dir(p)
    p.add_argument("--toy", action="store_true", help="the grid claim instead of the fashion-mnist comparison")
    p.add_argument("--instances-per-mode", type=int, default=20, help="--toy: conditioning points drawn per mode")
    p.add_argument("--smoke", action="store_true",
                   help="seconds: digits, icgan and gan, 20 steps, 200 samples (with --toy: 30 steps, 2 instances per mode)")
    args = p.parse_args(argv)
    if args.smoke and args.toy:
        args.steps, args.instances_per_mode = 30, 2
    elif args.smoke:
        args.dataset, args.models, args.steps, args.n = "digits", "icgan,gan", 20, 200
    args.data_dir = _harness.data_dir(args.dataset, args.data_dir)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    args.steps = args.steps or (2000 if args.toy else 1000)
    command = _harness.command_line("benchmarks.icgan", argv)
    if args.toy:
        text, figures = toy(args)
        print(text)
        _harness.log_result("icgan", text, command)
        return figures
    rows = []
    for name in args.models.split(","):
        rows.append(run_model(name, args))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    lines = [f"{args.dataset}, {args.steps} steps x batch {args.batch}, DCGAN width {args.width}, "
             f"{torch.get_num_threads()} threads, {args.n} samples vs up to 10,000 real, reference-classifier features; "
             f"IC-GAN embedding '{args.embedding}', k={args.k}",
             "", "| model | train (s) | FID | precision | recall | density | coverage | instance fidelity (top-10 of 1,000) "
             "| same, unseen test-split instances |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        fidelity = (f"{r['instance_fidelity']:.3f} | {r['instance_fidelity_unseen']:.3f}" if "instance_fidelity" in r
                    else "n/a (unconditional; chance 0.010) | n/a")
        lines.append(f"| {r['model']} | {r['train_s']} | {r['fid']:.2f} | {r['precision']:.3f} | {r['recall']:.3f} | "
                     f"{r['density']:.3f} | {r['coverage']:.3f} | {fidelity} |")
    text = "\n".join(lines)
    print(text)
    _harness.log_result("icgan", text, command)
    return rows


if __name__ == "__main__":
    main()
