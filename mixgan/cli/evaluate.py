"""mixgan evaluate: metrics of a run's samples, or of samples from any source in an .npz."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..config import capped
from ..data.npz import read_npz
from ..errors import MixganError
from ..training.dist import resolve_device
from ..metrics.registry import METRICS, SCORES
from ..viz import fmt
from .common import BarProgress, add_analysis_options, check_seed, write_json

INFO = [s.key for m in METRICS.values() if not m.anchored for s in m.scores]  # scores without anchors


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
    p.add_argument("--metrics", help="comma list of " + ",".join(m for m in METRICS if not METRICS[m].always)
                   + " (toy data: modes,prdc); default: every one the data allows (is and qd need class labels, "
                     "cas labelled samples)")
    p.add_argument("--k", type=int, default=5, help="neighbours for precision/recall/density/coverage")
    p.add_argument("--backbone", default="auto",
                   help="the feature network: auto (the default: classifier where the data has class labels, "
                        "else selfsup), classifier, selfsup (a contrastive encoder trained on the training images, "
                        "no labels) or inception")
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


def table(result: dict) -> str:
    """The scores beside their anchors: one row per score, its direction, and the caveats below."""
    anchors = result.get("anchors", {})
    held, const = anchors.get("held_out"), anchors.get("constant")
    notes = result.get("notes", {})
    marks = {text: "*" * (i + 1) for i, text in enumerate(dict.fromkeys(notes.values()))}
    points = result.get("backbone") == "none"
    constant = "constant point" if points else "constant grey"
    head = ["score", "samples"] + (["held-out real"] if held else []) + ([constant] if const else []) + ["better"]
    rows = []
    for key, s in SCORES.items():
        value = result.get(key)
        if s.higher_better is None or not (isinstance(value, (int, float)) or (key in result and key in INFO)):
            continue
        cells = [key + (f" {marks[notes[key]]}" if key in notes else ""), _fmt(value)]
        cells += [_fmt(held.get(key)) if key not in INFO else "-"] if held else []
        cells += [_fmt(const.get(key)) if key not in INFO else "-"] if const else []
        rows.append(cells + ["higher" if s.higher_better else "lower"])
    counts = ["samples (n)", str(result.get("n_fake", ""))] + ([str(held["n"])] if held else []) \
        + ([str(const["n"])] if const else []) + [""]
    rows.append(counts)
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = [f"feature network: {result.get('feature_net', result.get('backbone'))}",
             f"real side: {result.get('n_real')} training {'points' if points else 'images'} of {result.get('dataset')}"]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [head, *rows]]
    if "constant" in anchors:
        lines.append("anchors: held-out real " + ("points and a constant point (the training mean)" if points else
                                                  "images and a constant mid-grey image") + ", scored the same way")
    lines += [f"{mark} {text}" for text, mark in marks.items()]
    return "\n".join(lines)


def _fmt(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return fmt(value, ".4f" if abs(value) < 1e4 else ".4g")
    return str(value)


def run(args) -> int:
    from ..data import configured_dataset, load_dataset
    from ..metrics.suite import array_source, evaluate_samples, model_source

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
        samples = array_source(x, data, labels, source=args.samples)
        source = args.samples
    else:
        from ..api import load

        if args.dataset:
            raise MixganError("--dataset applies to --samples; a run evaluates against its own dataset")
        r = load(args.run, device=device, step=checkpoint_arg(args.run, args.step))
        data = configured_dataset(r.cfg.data, r.cfg.train.seed, data_dir=args.data_dir)
        samples = model_source(r.model, capped(args.n), args.seed)  # generated a batch at a time, kept as features
        source = f"{args.run} (step {r.step})"
    result = evaluate_samples(samples, data, metrics=args.metrics, backbone=args.backbone,
                              weights=args.weights, n_real=capped(args.n_real), k=args.k, seed=args.seed,
                              progress=progress, device=device, anchors=True)
    if progress is not None:
        progress.close()
    result["source"] = source
    print(table(result))
    targets = [Path(args.json)] if args.json else []
    if args.run:
        targets.append(Path(args.run) / "metrics.json")
    for path in targets:
        write_json(path, result)
        print(f"wrote {path}")
    return 0
