"""Sample quality at equal wall-clock: the library's models against a plain DCGAN script.

The baseline (``dcgan`` in ``--models``) follows the DCGAN paper (Radford et al. 2016) as the widely
copied single-file tutorial scripts implement it (``benchmarks/_harness.py``), not the library.

Every entry trains for the same ``--seconds`` in its own process, all of them at once, each with
one thread, so a busy machine slows them alike and the comparison survives it. The library models
are trained by ``mixgan train`` with ``train.max_seconds``; then every entry's 10,000 samples are
scored by ``mixgan evaluate --samples ... --dataset ...`` (FID, IS, precision, recall, density,
coverage in the reference classifier's feature space). The table is appended to
``benchmarks/results/quality.md``.

    OMP_NUM_THREADS=1 python -m benchmarks.quality --seconds 600 --models dcgan,gan,gmgan \\
        --dataset fashion-mnist --out runs/quality

``--steps N`` trains every entry for N steps instead (no clock; ``--jobs`` at a time): quality per
step, the regime of a GPU, where the script and the library's small nets make about as many steps in
the same minutes. With ``--steps`` an entry is kept in the benchmark cache, keyed by the code version
and its settings, and reused by a later call. ``--smoke``: digits, 20 steps, 500 samples, dcgan and gan.

``--variant 'LABEL=MODEL key=value ...'`` adds a library model with its own settings beside the
others (how the presets' values were chosen); a setting ending in ``.toml`` is a config file
(``mixgan train --config``), which the ``key=value`` settings override. ``--set key=value``
applies to every library model.
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

BASELINE = "dcgan"  # the name under which --models asks for the script baseline
COLUMNS = [("steps", "steps"), ("fid", "FID ↓"), ("fid_ratio", "FID / baseline"), ("is", "IS ↑"),
           ("precision", "precision ↑"), ("recall", "recall ↑"), ("density", "density ↑"),
           ("coverage", "coverage ↑")]


def entries(args) -> list[tuple[str, str, list[str]]]:
    """(label, model, settings) for every entry; model BASELINE is the script DCGAN."""
    return ([(name, name, []) for name in args.models.split(",") if name]
            + [_harness.parse_variant(t) for t in args.variant])


def command(model: str, settings: list[str], args, run: Path) -> list[str]:
    """The training command of one entry."""
    py, seed = sys.executable, ["--seed", str(args.seed)] if args.seed else []
    data = ["--data-dir", args.data_dir] if args.data_dir else []
    if model == BASELINE:
        return [py, "-m", "benchmarks.quality", "--baseline-worker", "--seconds", f"{args.seconds:g}", "--steps",
                str(args.steps), "--n", str(args.n), "--dataset", args.dataset, "--device", args.device,
                "--out", str(run)] + seed + data
    budget = ([f"train.steps={args.steps}", "train.max_seconds=0"] if args.steps
              else [f"train.max_seconds={args.seconds}", "train.steps=1000000000"])
    budget += [f"train.seed={args.seed}"] if args.seed else []
    cmd = [py, "-m", "mixgan", "train", "--model", model, "--dataset", args.dataset, "--out", str(run),
           "--device", args.device, "--quiet", "--set", "train.sample_every=1000000"] + data
    for s in budget + args.set + settings:
        cmd += ["--config", s] if s.endswith(".toml") else ["--set", s]
    return cmd


def run_all(cmds: list[list[str]], logs: list[Path], jobs: int) -> None:
    """Run the commands, ``jobs`` at a time, one thread each, from the repository root; fail on the
    first that fails."""
    path = os.pathsep.join(p for p in (str(_harness.ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": path}
    pending, running = list(zip(cmds, logs)), []
    while pending or running:
        while pending and len(running) < jobs:
            cmd, log = pending.pop(0)
            log.parent.mkdir(parents=True, exist_ok=True)
            running.append((subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env,
                                             cwd=_harness.ROOT), log))
        time.sleep(0.2)
        for proc, log in list(running):
            if proc.poll() is not None:
                running.remove((proc, log))
                if proc.returncode:
                    sys.exit(f"failed ({proc.returncode}), see {log}:\n{log.read_text()[-2000:]}")


def evaluate(run: Path, args) -> None:
    """Draw ``args.n`` samples of a library run (the baseline wrote its own) and score them with
    ``mixgan evaluate --samples``, as a user would; ``run/quality.json`` appears only when done."""
    from mixgan.cli import main as cli

    samples = run / "samples.npz"
    if args.models != BASELINE:
        code = cli(["sample", str(run), "--n", str(args.n), "--out", str(samples)])
        if code:
            sys.exit(code)
    code = cli(["evaluate", "--samples", str(samples), "--dataset", args.dataset, "--metrics", "fid,is,prdc", "--quiet", "--json",
                str(run / "quality.json.part")] + (["--data-dir", args.data_dir] if args.data_dir else []))
    if code:
        sys.exit(code)
    os.replace(run / "quality.json.part", run / "quality.json")


def steps_of(run: Path) -> int:
    if (run / "steps.json").exists():
        return json.loads((run / "steps.json").read_text())["steps"]
    last = (run / "stats.jsonl").read_text().strip().splitlines()[-1]
    return json.loads(last)["step"]


def table(rows: list[dict]) -> str:
    lines = ["| model | " + " | ".join(h for _, h in COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for r in rows:
        cells = [r["label"]] + [f"{r[k]:.3g}" if isinstance(r.get(k), float) else str(r.get(k, "")) for k, _ in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    """Run the comparison of ``argv``; append its table to the results log. Each row holds its
    entry's scores and its run folder (``run``, where ``samples.npz`` is)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=600, help="training wall-clock of every entry")
    p.add_argument("--steps", type=int, default=0, help="train every entry for this many steps instead (0: use --seconds)")
    p.add_argument("--jobs", type=int, default=0,
                   help="entries trained at once (default: all with --seconds, the core count with --steps)")
    p.add_argument("--models", help=f"comma list; '{BASELINE}' is the script baseline (default dcgan,gan,gmgan)")
    p.add_argument("--variant", action="append", default=[], metavar="'LABEL=MODEL key=value ...'",
                   help="a library model with its own settings (key=value, or a .toml config file), trained beside the others")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a setting for every library model")
    p.add_argument("--dataset", default="fashion-mnist")
    _harness.add_data_dir(p)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0, help="seed of the baseline and of every library model")
    p.add_argument("--n", type=int, default=10_000, help="samples scored per entry")
    p.add_argument("--eval-jobs", type=int, default=2, help="evaluations run at once")
    p.add_argument("--out", default="runs/quality", help="folder of the runs trained with --seconds")
    p.add_argument("--log", default="quality", help="results log to append to ('': none)")
    p.add_argument("--rows", help="also write the rows as JSON to this file")
    p.add_argument("--smoke", action="store_true", help="seconds: digits, 20 steps, 500 samples (models dcgan,gan unless given)")
    p.add_argument("--baseline-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--eval-worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.smoke:
        args.dataset, args.steps, args.n, args.models = "digits", 20, 500, args.models or "dcgan,gan"
    args.models = args.models or "dcgan,gan,gmgan"
    args.data_dir = _harness.data_dir(args.dataset, args.data_dir)
    out = Path(args.out)
    if args.baseline_worker:
        import torch

        torch.set_num_threads(1)
        _harness.train_baseline(args.dataset, args.seconds, args.device, out, seed=args.seed, max_steps=args.steps,
                                n_samples=args.n, data_folder=args.data_dir)
        return []
    if args.eval_worker:
        evaluate(out, args)
        return []
    todo = entries(args)
    runs, fresh = {}, []
    for label, model, settings in todo:
        if args.steps:  # quality per step: the same entry with the same code gives the same result
            key = {"model": model, "settings": args.set + settings, "dataset": args.dataset, "steps": args.steps,
                   "seed": args.seed, "device": args.device, "n": args.n}
            runs[label] = _harness.cache_dir("quality", __file__, key) / "run"
        else:
            runs[label] = out / label
        if not (runs[label] / "quality.json").is_file():
            fresh.append((label, model, settings))
    jobs = args.jobs or (os.cpu_count() if args.steps else len(fresh))
    load = os.getloadavg()
    run_all([command(model, s, args, runs[label]) for label, model, s in fresh],
            [runs[label].with_name(runs[label].name + ".train.log") for label, _, _ in fresh], jobs=jobs)
    load_after = os.getloadavg()
    evals = [[sys.executable, "-m", "benchmarks.quality", "--eval-worker", "--out", str(runs[label]), "--n", str(args.n),
              "--dataset", args.dataset] + (["--data-dir", args.data_dir] if args.data_dir else [])
             + (["--models", BASELINE] if model == BASELINE else []) for label, model, _ in fresh]
    run_all(evals, [runs[label].with_name(runs[label].name + ".eval.log") for label, _, _ in fresh],
            jobs=args.eval_jobs)
    rows = []
    for label, model, settings in todo:
        result = json.loads((runs[label] / "quality.json").read_text())
        rows.append({"label": label, "model": model, "settings": args.set + settings, "run": str(runs[label]),
                     "steps": steps_of(runs[label]), **{k: result[k] for k, _ in COLUMNS[1:] if k in result}})
    base = next((r for r in rows if r["model"] == BASELINE), None)
    for r in rows:
        if base is not None:
            r["fid_ratio"] = r["fid"] / base["fid"]
    budget = (f"{args.steps} steps each, {jobs} at a time" if args.steps
              else f"{args.seconds:g} s each, {len(todo)} processes side by side")
    reused = [e[0] for e in todo if e not in fresh]
    if reused:
        budget += f" ({', '.join(reused)} reused from the cache)"
    head = (f"{budget} (1 thread each), device {args.device}, dataset {args.dataset}, {args.n} samples scored per "
            f"entry in the reference classifier's feature space; load average {load[0]:.2f} before, "
            f"{load_after[0]:.2f} at the end of training")
    text = head + "\n\n" + table(rows)
    print(text)
    if args.log:
        _harness.log_result(args.log, text, _harness.command_line("benchmarks.quality", argv))
    if args.rows:
        Path(args.rows).write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    main()
