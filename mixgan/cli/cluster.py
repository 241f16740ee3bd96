"""mixgan cluster: cluster a dataset split with a trained GM-GAN and score it."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from ..analysis import cluster_run
from ..analysis.cluster import class_names, resolve_method
from ..api import load
from ..metrics.clustering import confusion
from ..viz import confusion_plot, labelled_rows
from ..errors import MixganError
from .common import BarProgress, add_analysis_options, check_seed, format_table, write_json, write_npz


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("cluster", help="cluster real images with a GM-GAN's Gaussians",
                       description="Assign every real image of a split to a Gaussian and score the clustering.")
    p.add_argument("run", help="run directory of a gmgan model")
    p.add_argument("--split", default="test", choices=["train", "test"])
    p.add_argument("--method", choices=["encoder", "classifier"],
                   help="encoder: the run's encoder (the default where it has one); classifier: the paper's "
                        "classifier trained on generated images (the default otherwise)")
    p.add_argument("--per-component", type=int, default=1000, help="generated images per Gaussian (classifier)")
    p.add_argument("--epochs", type=int, default=3, help="epochs of the Gaussian classifier (classifier)")
    add_analysis_options(p)
    return p


def run(args) -> int:
    if args.per_component < 1:
        raise MixganError(f"--per-component must be >= 1, got {args.per_component}")
    if args.epochs < 1:
        raise MixganError(f"--epochs must be >= 1, got {args.epochs}")
    check_seed(args.seed)
    r = load(args.run, device=args.device)
    method = resolve_method(r.model, args.method)
    result = cluster_run(r.model, r.data, args.split, args.per_component, args.epochs, args.seed,
                         progress=None if args.quiet else BarProgress(), method=method)
    names = class_names(r.data)
    named = lambda c: names[c] if 0 <= c < len(names) else "none"  # noqa: E731
    out = {**result.scores, "class_names": names, "method": method, "kmeans": result.kmeans, "split": args.split, "components": r.model.components,
           "gaussian_to_class": result.gaussian_to_class, **result.purity}
    rd = Path(args.run)
    write_npz(rd / "assignments.npz", {"pred": result.pred.astype(np.int64), "gaussian": result.gaussian.astype(np.int64),
                                       **({"label": result.label.astype(np.int64)} if result.label is not None else {})})
    write_json(rd / "cluster.json", out)
    if args.json:
        write_json(args.json, out)
    if result.label is not None:
        counts = confusion(result.gaussian, result.label, r.model.components, r.data.num_classes)
        order = np.argsort(np.asarray(result.gaussian_to_class), kind="stable")  # by matched class: the diagonal
        confusion_plot(counts[order], rd / "cluster-confusion.png", ylabel="Gaussian (ordered by matched class)",
                       yticklabels=[f"G{k} -> {named(result.gaussian_to_class[k])}" for k in order],
                       xticklabels=names,
                       title=f"{args.split} split: one-to-one accuracy {result.scores['accuracy']:.3f} "
                             f"(majority class {result.scores['majority_baseline']:.3f})")
    if r.data.is_image:
        K = r.model.components
        x, _ = r.model.sample_grid(columns=10)
        labels = [f"G{k} -> {named(result.gaussian_to_class[k])}" if result.label is not None else f"G{k}"
                  for k in range(K)]
        labelled_rows(x, K, labels, rd / "cluster-gaussians.png", title="each Gaussian and its matched class")
        split_x = r.data.images(args.split)
        side, blank = 8, torch.ones_like(split_x[0])  # blank (white) where a Gaussian got fewer images
        real = []
        for k in range(K):
            mine = list(split_x[torch.from_numpy(result.gaussian == k)][:side])
            real.append(torch.stack(mine + [blank] * (side - len(mine))))
        both = torch.cat([x.view(K, 10, *x.shape[1:])[:, :side], torch.stack(real)], 1).flatten(0, 1)
        counts = np.bincount(result.gaussian, minlength=K)
        labels = [f"G{k}: {counts[k]} real" for k in range(K)]
        labelled_rows(both, K, labels, rd / "cluster-assigned.png", divider=side,
                      title=f"each Gaussian: {side} generated | {side} real images assigned to it ({method})")
    if result.label is not None:
        sc, K, N = result.scores, r.model.components, r.data.num_classes
        rows = [("accuracy (one-to-one)", sc["accuracy"]), ("majority-class baseline", sc["majority_baseline"])]
        if "accuracy_many_to_one" in sc:
            rows.append((f"accuracy (many-to-one: {K} Gaussians merged into {N} classes)", sc["accuracy_many_to_one"]))
        rows += [("nmi", sc["nmi"]), ("ari", sc["ari"])]
        rows += [(f"kmeans {k}" + (" (one-to-one)" if k == "accuracy" else ""), v) for k, v in result.kmeans.items()]
        print(format_table(rows))
    else:
        print(f"{args.split} split has no labels: assignments written, nothing to score")
    if result.purity:
        print(f"Gaussians by the reference classifier: mean purity {result.purity['purity']:.3f} "
              f"(share of each Gaussian's samples in its main class), "
              f"{result.purity['classes_covered']} of {r.data.num_classes} classes made")
    print(f"wrote {rd / 'assignments.npz'}, {rd / 'cluster.json'}")
    return 0
