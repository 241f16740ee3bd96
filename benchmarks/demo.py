"""`make demo`, timed: the Makefile's demo commands run one by one, wall-clock and CPU time per command.

    python -m benchmarks.demo [--fresh-cache] [--seeds 0,1,2] [--set KEY=VALUE ...] [--smoke]

The commands are read from the Makefile's ``demo`` target (train gmgan on digits with its default
recipe, evaluate, cluster, tradeoff, report), so this measures what ``make demo`` runs; each runs
as its own process under this interpreter. CPU time is user + system time of the command and its
children: on a machine shared with other jobs the wall-clock is inflated, the CPU time much less.
``--fresh-cache`` gives every run an empty ``MIXGAN_CACHE``, so what a fresh clone computes once
(the contrastive encoder, the reference classifier) is inside the clock. ``--seeds`` repeats the
demo with ``--set train.seed=S`` (seed 0 is the demo as is); ``--set`` passes settings to the
training command, to try one before it goes into the recipe. The entry in
``benchmarks/results/demo.md`` holds the per-command times, the clustering accuracy beside
k-means', and the FID.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._harness import ROOT, command_line, log_result

RUN = "$$run"
SMOKE = {  # tiny sizes, for the suite: the pipeline, not the figures
    "train": ["--set", "train.steps=20", "--set", "model.width=8", "--set", "encoder.init=scratch",
              "--set", "encoder.space=pixels", "--set", "train.eval_every=0", "--set", "train.sample_every=20",
              "--set", "train.checkpoint_every=20"],
    "evaluate": ["--n", "200", "--n-real", "200", "--metrics", "fid"],
    "tradeoff": ["--n", "200", "--scales", "0.5,1"],
}


def demo_commands(makefile: Path = ROOT / "Makefile") -> list[list[str]]:
    """The ``mixgan`` commands of the Makefile's demo target, as the arguments after ``-m mixgan``
    (``$$run`` stands for the run directory)."""
    recipe = re.search(r"^demo:.*\n((?:\t.*\n?)+)", makefile.read_text(), re.M)
    if not recipe:
        raise SystemExit(f"no demo target in {makefile}")
    return [shlex.split(c) for c in re.findall(r"\$\(PY\) -m mixgan (.*?)\s*(?:&&|$)", recipe.group(1), re.M)]


def run_demo(run: Path, settings: list[str], smoke: bool, env: dict) -> tuple[list[dict], dict]:
    """Run every demo command on ``run``; (per-command times, the run's scores)."""
    stages = []
    for args in demo_commands():
        args = [str(run) if a == RUN else a for a in args]
        stage = args[0]
        if stage == "train":
            args += settings
        args += SMOKE.get(stage, []) if smoke else []
        before, load, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), os.getloadavg()[0], time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "mixgan", *args], cwd=ROOT, env=env, capture_output=True,
                              text=True)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode:
            raise SystemExit(f"`mixgan {shlex.join(args)}` failed ({done.returncode}):\n{done.stderr[-2000:]}")
        cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        stages.append({"stage": stage, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "load": round(load, 1)})
    cluster = json.loads((run / "cluster.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    scores = {"accuracy": cluster["accuracy"], "nmi": cluster["nmi"], "kmeans": cluster["kmeans"]["accuracy"],
              "fid": metrics.get("fid")}
    return stages, scores


def table(results: list[tuple[int, list[dict], dict]]) -> str:
    lines = ["| seed | " + " | ".join(f"{s['stage']} wall / CPU s" for s in results[0][1])
             + " | total wall s | total CPU s | accuracy | NMI | k-means accuracy | FID |",
             "|---:|" + "---:|" * (len(results[0][1]) + 6)]
    for seed, stages, scores in results:
        cells = [f"{s['wall_s']:.0f} / {s['cpu_s']:.0f}" for s in stages]
        wall, cpu = sum(s["wall_s"] for s in stages), sum(s["cpu_s"] for s in stages)
        fid = "–" if scores["fid"] is None else f"{scores['fid']:.2f}"
        lines.append(f"| {seed} | " + " | ".join(cells) + f" | {wall:.0f} | {cpu:.0f} | {scores['accuracy']:.3f} | "
                     f"{scores['nmi']:.3f} | {scores['kmeans']:.3f} | {fid} |")
    loads = ", ".join(f"{s['load']:g}" for _, stages, _ in results for s in stages)
    return "\n".join(lines) + f"\n\n1-minute load average at the start of each command: {loads}.\n"


def main(argv: list[str] | None = None) -> list[tuple[int, list[dict], dict]]:
    """Run the demo for each seed and log it; returns (seed, per-command times, scores) per seed."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="0", help="comma list; seed S adds --set train.seed=S to training")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a setting for the training command")
    p.add_argument("--fresh-cache", action="store_true", help="an empty MIXGAN_CACHE per run (a fresh clone)")
    p.add_argument("--out", default="", help="folder for the runs (default: a temporary folder)")
    p.add_argument("--smoke", action="store_true", help="tiny sizes: checks the pipeline, not the figures")
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    settings = [a for kv in args.set for a in ("--set", kv)]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        for seed in seeds:
            run = out / f"demo-seed{seed}"
            env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
            if args.fresh_cache:
                env["MIXGAN_CACHE"] = str(Path(tmp) / f"cache-seed{seed}")
            seed_settings = settings + (["--set", f"train.seed={seed}"] if seed else [])
            stages, scores = run_demo(run, seed_settings, args.smoke, env)
            results.append((seed, stages, scores))
            print(f"seed {seed}: {sum(s['wall_s'] for s in stages):.0f} s wall, "
                  f"{sum(s['cpu_s'] for s in stages):.0f} s CPU, accuracy {scores['accuracy']:.3f} "
                  f"(k-means {scores['kmeans']:.3f})", flush=True)
    body = table(results)
    print(body)
    cache = "an empty cache per run" if args.fresh_cache else "the cache as found"
    path = log_result("demo", f"`make demo`'s commands, {cache}"
                              f"{', settings ' + ' '.join(args.set) if args.set else ''}.\n\n{body}",
                      command=command_line("benchmarks.demo", argv))
    print(f"wrote {path}")
    return results


if __name__ == "__main__":
    main()
