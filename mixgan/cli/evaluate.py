"""mixgan evaluate: metrics of a run's samples, or of samples from any source in an .npz."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..data.npz import read_npz
from ..errors import MixganError
from ..training.dist import resolve_device
from .common import BarProgress, add_analysis_options, check_seed, format_table, write_json

SHOWN = ["fid", "kid", "is", "precision", "recall", "density", "coverage", "quality", "diversity",
         "conditional_accuracy", "intra_fid", "cas", "modes", "high_quality", "kl",
         "n_real", "n_fake", "backbone", "classifier_accuracy"]


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("evaluate", help="FID, IS, precision/recall, density/coverage, quality/diversity",
                       description="Evaluate a run (RUN) or an .npz of samples (--samples FILE --dataset D). "
                                   "The npz holds x (images in [-1, 1] or uint8 in [0, 255], or toy points) "
                                   "and optionally label (the class each sample was generated for).")
    p.add_argument("run", nargs="?", help="run directory (writes RUN/metrics.json)")
    p.add_argument("--samples", help=".npz of samples from any source")
    p.add_argument("--dataset", help="dataset the samples imitate (with --samples)")
    p.add_argument("--data-dir", default="", help="folder of the dataset's files")
    p.add_argument("--step", help="the checkpoint to evaluate: a kept step, or 'best' (by FID during "
                                  "training); default the newest")
    p.add_argument("--n", type=int, default=10_000, help="samples to draw from the run")
    p.add_argument("--n-real", type=int, default=10_000, help="real training images to compare with")
    p.add_argument("--metrics", help="comma list of fid,kid,is,prdc,qd,cas (toy data: modes,prdc); "
                                     "default fid,kid,is,prdc,qd, plus cas for labelled samples")
    p.add_argument("--k", type=int, default=5, help="neighbours for precision/recall/density/coverage")
    p.add_argument("--backbone", default="classifier", help="classifier (default) or inception")
    p.add_argument("--weights", help="weights file for --backbone inception (safetensors or a torch state dict)")
    add_analysis_options(p)
    return p


def checkpoint_arg(run_dir: str, step: str | None) -> int | None:
    """--step as a step number: None (the newest), an integer, or 'best'."""
    if step is None:
        return None
    if step == "best":
        from ..training import RunDir

        best = RunDir(run_dir).read_best()
        if best is None:
            raise MixganError(f"{run_dir}: no best step recorded (train with train.eval_every > 0)")
        return best["step"]
    try:
        return int(step)
    except ValueError:
        raise MixganError(f"--step must be a step number or 'best', got '{step}'") from None


def load_npz(path: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(x, label or None) from an .npz, refusing pickled object arrays."""
    arrays = read_npz(path, path)
    if "x" not in arrays:
        raise MixganError(f"{path}: no 'x' array (found {', '.join(arrays) or 'nothing'})")
    return arrays["x"], arrays.get("label")


def sample_run(run, n: int, seed: int):
    """(x, labels or None): class-conditional models get n/C samples of every class."""
    model = run.model
    if model.class_conditional and model.num_classes:
        parts, labels = [], []
        c = model.num_classes
        for y in range(c):
            m = n // c + (1 if y < n % c else 0)
            if m:
                s = run.sample(m, label=y, seed=seed + y)
                parts.append(s.x)
                labels.append(np.full(m, y, dtype=np.int64))
        import torch

        return torch.cat(parts).numpy(), np.concatenate(labels)
    s = run.sample(n, seed=seed)
    return s.x.numpy(), (s.label.numpy() if s.label is not None else None)


def run(args) -> int:
    from ..data import load_dataset
    from ..metrics.suite import evaluate_samples

    if args.step is not None and not args.run:
        raise MixganError("--step applies to a run directory")
    if bool(args.run) == bool(args.samples):
        raise MixganError("give either a run directory or --samples FILE.npz (with --dataset)")
    if args.n < 2:
        raise MixganError(f"--n must be >= 2, got {args.n}")
    if args.k < 1:
        raise MixganError(f"--k must be >= 1, got {args.k}")
    check_seed(args.seed)
    progress = None if args.quiet else BarProgress()
    device = resolve_device(args.device)
    if args.samples:
        if not args.dataset:
            raise MixganError("--samples needs --dataset naming the data the samples imitate")
        data = load_dataset(args.dataset, args.data_dir)
        x, labels = load_npz(args.samples)
        source = args.samples
    else:
        from ..api import load

        if args.dataset:
            raise MixganError("--dataset applies to --samples; a run evaluates against its own dataset")
        r = load(args.run, device=device, step=checkpoint_arg(args.run, args.step))
        data = load_dataset(r.cfg.data.dataset, args.data_dir or r.cfg.data.data_dir, seed=r.cfg.train.seed,
                            test_fraction=r.cfg.data.test_fraction, resolution=r.cfg.data.resolution,
                            channels=r.cfg.data.channels)
        x, labels = sample_run(r, args.n, args.seed)
        source = f"{args.run} (step {r.step})"
    result = evaluate_samples(x, data, metrics=args.metrics, labels=labels, backbone=args.backbone,
                              weights=args.weights, n_real=args.n_real, k=args.k, seed=args.seed,
                              progress=progress, device=device)
    if progress is not None:
        progress.close()
    result["source"] = source
    rows = [(key, result[key]) for key in SHOWN if key in result]
    print(format_table(rows))
    targets = [Path(args.json)] if args.json else []
    if args.run:
        targets.append(Path(args.run) / "metrics.json")
    for path in targets:
        write_json(path, result)
        print(f"wrote {path}")
    return 0
