"""Sample quality on a real colour set: the default models against the DCGAN script, equal wall-clock.

The set is Twitter's drawn emoji (:func:`_harness.emoji_folder`: 3,781 colour pictures in 9
category folders, on white), at ``--resolution`` 32 or 64 px. For every seed, the entries
(``--models``: ``dcgan`` is the single-file script of ``_harness.baseline_nets``; library models
train from their defaults) train side by side for the same ``--seconds``, one thread each, by
``python -m benchmarks.quality``; their samples are scored by ``mixgan evaluate --samples`` in the
reference classifier's feature space (trained on the emoji's 9 categories): FID, precision,
recall. A grid of each entry's first 64 samples and one of real images are written to
``benchmarks/results/img/`` and linked from the log.

    OMP_NUM_THREADS=1 python -m benchmarks.colour_quality --resolution 32 --seconds 300 --seeds 0,1,2 \\
        --models dcgan,gan,gmgan [--variant 'LABEL=MODEL key=value ...'] [--set key=value]

On a shared machine the processes get unequal shares of the cores: ``--cpu-seconds S --step-cost
dcgan=0.843,gan=0.232,...`` gives every entry the same CPU time instead, as S / (its CPU seconds
per step, from ``benchmarks.step_speed``) steps.

Appends the per-seed table, the mean and spread over seeds and the targets (FID at most 0.5x
the script's, recall at least the script's) to ``benchmarks/results/colour_quality.md``.
``--smoke``: 32 px, 8 steps, dcgan and gan, 200 samples, no grids.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from . import _harness

BASELINE = "dcgan"  # the script's name in benchmarks.quality's --models
SHOWN = [("steps", "steps"), ("fid", "FID ↓"), ("fid_ratio", "FID / script"), ("precision", "precision ↑"),
         ("recall", "recall ↑"), ("density", "density ↑"), ("coverage", "coverage ↑")]


def grid(samples: Path, target: Path) -> None:
    """The first 64 images of an .npz of samples as an 8 x 8 PNG."""
    import numpy as np
    import torch

    from mixgan.data.npz import read_npz
    from mixgan.viz import image_grid, save_png

    x = torch.from_numpy(np.asarray(read_npz(samples, str(samples))["x"][:64])).float()
    if x.max() > 1.5:  # uint8 samples
        x = x / 127.5 - 1
    save_png(image_grid(x, rows=8), target)


def real_grid(folder: str, target: Path) -> None:
    from mixgan.data import load_dataset
    from mixgan.viz import image_grid, save_png

    import torch

    data = load_dataset("folder", folder)
    pick = torch.randperm(len(data.x_train), generator=torch.Generator().manual_seed(0))[:64]
    save_png(image_grid(data.images("train", pick), rows=8), target)


def seed_table(rows: list[dict]) -> str:
    lines = ["| entry | " + " | ".join(h for _, h in SHOWN) + " |", "|---" * (len(SHOWN) + 1) + "|"]
    for r in rows:
        cells = [f"{r[k]:.3g}" if isinstance(r.get(k), float) else str(r.get(k, "")) for k, _ in SHOWN]
        lines.append(f"| {r['label']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary(per_seed: dict[int, list[dict]]) -> tuple[str, dict]:
    """Mean ± sd over seeds per entry, and the targets against the script."""
    labels = [r["label"] for r in next(iter(per_seed.values()))]
    stats = {}
    for label in labels:
        rows = [next(r for r in rows if r["label"] == label) for rows in per_seed.values()]
        stats[label] = {k: [r[k] for r in rows if isinstance(r.get(k), (int, float))] for k, _ in SHOWN}
    lines = ["| entry | " + " | ".join(h for _, h in SHOWN) + " |", "|---" * (len(SHOWN) + 1) + "|"]
    for label, s in stats.items():
        cells = [_harness.mean_sd(s[k], ".3g", ".2g", empty="") for k, _ in SHOWN]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    verdict = []
    if BASELINE in stats:
        base = stats[BASELINE]
        for label, s in stats.items():
            if label == BASELINE:
                continue
            fid_ok = all(r <= 0.5 for r in s["fid_ratio"])
            recall_ok = all(a >= b for a, b in zip(s["recall"], base["recall"]))
            verdict.append(f"- {label}: FID ≤ 0.5 × script's in {sum(r <= 0.5 for r in s['fid_ratio'])} of "
                           f"{len(s['fid_ratio'])} seeds, recall ≥ script's in "
                           f"{sum(a >= b for a, b in zip(s['recall'], base['recall']))} of {len(s['recall'])}: "
                           f"{'met' if fid_ok and recall_ok else 'not met'}")
    return "\n".join(lines) + ("\n\nTargets (every seed):\n" + "\n".join(verdict) if verdict else ""), stats


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--resolution", type=int, default=32, choices=(32, 64))
    p.add_argument("--seconds", type=float, default=300, help="training wall-clock of every entry")
    p.add_argument("--steps", type=int, default=0, help="train every entry for this many steps instead")
    p.add_argument("--cpu-seconds", type=float, default=0,
                   help="equal CPU time instead: every entry trains cpu-seconds / its --step-cost steps")
    p.add_argument("--step-cost", default="", metavar="LABEL=S,...",
                   help="CPU seconds of one step of each entry (step_speed's 'CPU s/step'), for --cpu-seconds")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--models", default="dcgan,gan,gmgan")
    p.add_argument("--variant", action="append", default=[], metavar="'LABEL=MODEL key=value ...'")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a setting for every library model")
    p.add_argument("--n", type=int, default=3000, help="samples scored per entry")
    p.add_argument("--out", default="runs/colour_quality")
    p.add_argument("--smoke", action="store_true", help="seconds: 32 px, 8 steps, dcgan and gan, 200 samples")
    args = p.parse_args(argv)
    if args.smoke:
        args.resolution, args.steps, args.seeds, args.models, args.n = 32, 8, "0", "dcgan,gan", 200
    folder = str(_harness.emoji_folder(args.resolution))
    img = _harness.results_dir() / "img"
    img.mkdir(parents=True, exist_ok=True)
    # the grids of one entry of the log apart from every other entry's
    stem = f"colour_quality-{args.resolution}px-{time.strftime('%Y%m%d-%H%M', time.gmtime())}"
    per_seed, links = {}, []
    load = os.getloadavg()
    variants, models = list(args.variant), args.models
    if args.cpu_seconds:  # the script trains its own steps; each library entry becomes a variant with its steps
        cost = {k: float(v) for k, v in (t.split("=") for t in args.step_cost.split(",") if t)}
        labels = [m for m in args.models.split(",") if m] + [v.split("=", 1)[0] for v in args.variant]
        missing = [label for label in labels if label not in cost]
        if missing:
            sys.exit(f"--step-cost has no cost for {', '.join(missing)}")
        steps = {label: max(1, round(args.cpu_seconds / cost[label])) for label in labels}
        variants = [f"{m}={m} train.steps={steps[m]}" for m in args.models.split(",") if m and m != BASELINE]
        variants += [f"{v} train.steps={steps[v.split('=', 1)[0]]}" for v in args.variant]
        models = BASELINE if BASELINE in args.models.split(",") else ""
        args.steps = steps.get(BASELINE, 1)
    if not args.smoke:  # trained now, so that no entry spends its minutes on it (quality during training)
        from mixgan.metrics.classifier import get_classifier

        get_classifier("folder", folder)
    for seed in map(int, args.seeds.split(",")):
        budget = ["--steps", str(args.steps)] if args.steps else ["--seconds", f"{args.seconds:g}"]
        budget += ["--jobs", str(len(variants) + len([m for m in models.split(",") if m]))]
        qargs = (budget + ["--models", models, "--dataset", "folder", "--data-dir", folder, "--seed", str(seed),
                           "--n", str(args.n), "--out", f"{args.out}/{args.resolution}px/seed{seed}"]
                 + [a for v in variants for a in ("--variant", v)] + [a for s in args.set for a in ("--set", s)])
        rows_file = Path(args.out) / f"{args.resolution}px" / f"seed{seed}.rows.json"
        rows_file.parent.mkdir(parents=True, exist_ok=True)
        code = subprocess.call([sys.executable, "-m", "benchmarks.quality", *qargs, "--log", "", "--rows",
                                str(rows_file)], cwd=_harness.ROOT)
        if code:
            sys.exit(f"benchmarks.quality failed ({code}) for seed {seed}")
        rows = json.loads(rows_file.read_text())
        per_seed[seed] = rows
        if not args.smoke:
            for r in rows:
                target = img / f"{stem}-{r['label']}-seed{seed}.png"
                grid(Path(r["run"]) / "samples.npz", target)
                links.append(f"[{r['label']} seed {seed}](img/{target.name})")
    if not args.smoke:
        real_grid(folder, img / f"{stem}-real.png")
        links.insert(0, f"[real images](img/{stem}-real.png)")
    per_seed_text = "\n\n".join(f"Seed {seed}:\n\n" + seed_table(rows) for seed, rows in per_seed.items())
    table, stats = summary(per_seed)
    budget = (f"the same {args.cpu_seconds:g} s of CPU time (steps = CPU seconds / CPU s per step: "
              f"{args.step_cost})" if args.cpu_seconds
              else f"{args.steps} steps" if args.steps else f"{args.seconds:g} s wall-clock")
    text = (f"Emoji ({_harness.EMOJI_PACKAGE}, 9 categories) at {args.resolution} px; every entry {budget}, "
            f"side by side, one thread each, seeds {args.seeds}; {args.n} samples scored per entry in the "
            f"reference classifier's feature space; library models from their defaults"
            + (f" with {', '.join(args.set)}" if args.set else "")
            + f". Load average {load[0]:.2f} at the start, {os.getloadavg()[0]:.2f} at the end.\n\n"
            + table + "\n\n" + per_seed_text + ("\n\nSample grids: " + ", ".join(links) if links else ""))
    print(text)
    _harness.log_result("colour_quality", text, _harness.command_line("benchmarks.colour_quality", argv))
    return stats


if __name__ == "__main__":
    sys.exit(0 if main() is not None else 1)
