"""Sample quality at equal wall-clock: the library's models against a plain DCGAN written here.

The baseline follows the DCGAN paper (Radford et al. 2016) as the widely copied single-file
tutorial scripts implement it: G upsamples a linear seed twice with conv + BatchNorm + ReLU to a
tanh image; D is four stride-2 convs with LeakyReLU(0.2), dropout 0.25 and BatchNorm; BCE,
Adam 2e-4 with beta1 0.5, batch 64. It lives in this file, not in the library.

Every entry trains for the same ``--seconds`` in its own process, all of them at once, each with
one thread, so a busy machine slows them alike and the comparison survives it. The library models
are trained by ``mixgan train`` with ``train.max_seconds``; then every entry's 10,000 samples are
scored by ``mixgan evaluate --samples ... --dataset ...`` (FID, IS, precision, recall, density,
coverage in the reference classifier's feature space).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/quality.py --seconds 600 --models dcgan,gan,gmgan \\
        --dataset fashion-mnist --out runs/quality

``--steps N`` trains every entry for N steps instead (no clock; ``--jobs`` at a time): quality per
step, the regime of a GPU, where the script and the library's small nets make about as many steps in
the same minutes (issue #13: 8,850 and 10,650 in 120 s on an H200).

With ``--steps``, an entry already trained and scored in ``--out`` by the same command, whose run
holds the settings that command resolves to today, is reused.

``--variant 'LABEL=MODEL key=value ...'`` adds a library model with its own settings beside the
others (how the presets' values were chosen); a setting ending in ``.toml`` is a config file
(``mixgan train --config``), which the ``key=value`` settings override. ``--set key=value``
applies to every library model.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA_DIRS = {"fashion-mnist": "/usr/share/datasets/fashion-mnist"}
BASELINE = "dcgan"  # the name under which --models asks for the script baseline
N_SAMPLES = 10_000
COLUMNS = [("steps", "steps"), ("fid", "FID ↓"), ("fid_ratio", "FID / baseline"), ("is", "IS ↑"),
           ("precision", "precision ↑"), ("recall", "recall ↑"), ("density", "density ↑"),
           ("coverage", "coverage ↑")]


# ---- the baseline ---------------------------------------------------------------------------
def baseline_nets(channels: int, size: int, latent_dim: int = 100):
    from torch import nn

    s0 = size // 4

    class Generator(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(latent_dim, 128 * s0 * s0)
            self.body = nn.Sequential(
                nn.BatchNorm2d(128), nn.Upsample(scale_factor=2),
                nn.Conv2d(128, 128, 3, 1, 1), nn.BatchNorm2d(128), nn.ReLU(),
                nn.Upsample(scale_factor=2),
                nn.Conv2d(128, 64, 3, 1, 1), nn.BatchNorm2d(64), nn.ReLU(),
                nn.Conv2d(64, channels, 3, 1, 1), nn.Tanh())

        def forward(self, z):
            return self.body(self.fc(z).view(len(z), 128, s0, s0))

    def block(c_in, c_out, bn=True):
        layers = [nn.Conv2d(c_in, c_out, 3, 2, 1), nn.LeakyReLU(0.2), nn.Dropout2d(0.25)]
        return layers + ([nn.BatchNorm2d(c_out)] if bn else [])

    ds = math.ceil(size / 16)
    D = nn.Sequential(*block(channels, 16, bn=False), *block(16, 32), *block(32, 64), *block(64, 128),
                      nn.Flatten(), nn.Linear(128 * ds * ds, 1))
    return Generator(), D


def train_baseline(dataset: str, seconds: float, device: str, out: Path, seed: int = 0, max_steps: int = 0) -> None:
    """Train the script DCGAN for ``seconds`` (or ``max_steps`` steps, when > 0) and write
    N_SAMPLES samples and its step count."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from mixgan.data import load_dataset

    torch.manual_seed(seed)
    data = load_dataset(dataset, DATA_DIRS.get(dataset, ""), seed=seed)
    x = data.x_train.to(device)
    G, D = baseline_nets(x.shape[1], x.shape[2])
    G, D = G.to(device), D.to(device)
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    batch, steps, order, pos = 64, 0, torch.randperm(len(x), device=device), 0
    ones, zeros = torch.ones(batch, 1, device=device), torch.zeros(batch, 1, device=device)
    start = time.perf_counter()
    while (steps < max_steps) if max_steps else (time.perf_counter() - start < seconds):
        if pos + batch > len(x):
            order, pos = torch.randperm(len(x), device=device), 0
        real, pos = x[order[pos:pos + batch]], pos + batch
        fake = G(torch.randn(batch, 100, device=device))
        loss_d = (F.binary_cross_entropy_with_logits(D(real), ones)
                  + F.binary_cross_entropy_with_logits(D(fake.detach()), zeros)) / 2
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        loss_g = F.binary_cross_entropy_with_logits(D(fake), ones)
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        steps += 1
    trained = time.perf_counter() - start
    G.eval()
    with torch.no_grad():
        samples = torch.cat([G(torch.randn(1000, 100, device=device)).cpu() for _ in range(N_SAMPLES // 1000)])
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "samples.npz", x=samples.numpy())
    (out / "steps.json").write_text(json.dumps({"steps": steps, "seconds": trained}))


# ---- the side-by-side runs ----------------------------------------------------------------------
def variant(text: str) -> tuple[str, str, list[str]]:
    """``--variant 'LABEL=MODEL key=value ...'`` as (label, model, settings); a malformed one exits
    with one line."""
    label, _, rest = text.partition("=")
    if not label or "/" in label or not rest.strip():
        sys.exit(f"--variant '{text}': expected 'LABEL=MODEL key=value ...' with no '/' in LABEL")
    model, *settings = shlex.split(rest)
    return label, model, settings


def entries(args) -> list[tuple[str, str, list[str]]]:
    """(label, model, settings) for every entry; model BASELINE is the script DCGAN."""
    return [(name, name, []) for name in args.models.split(",") if name] + [variant(t) for t in args.variant]


def command(label: str, model: str, settings: list[str], args, out: Path) -> list[str]:
    """The training command of one entry; seed 0, the default, is left out so that older entries
    keep their identity."""
    py, seed = sys.executable, ["--seed", str(args.seed)] if args.seed else []
    if model == BASELINE:
        return [py, __file__, "--baseline-worker", "--seconds", f"{args.seconds:g}", "--steps", str(args.steps),
                "--dataset", args.dataset, "--device", args.device, "--out", str(out / label)] + seed
    budget = ([f"train.steps={args.steps}", "train.max_seconds=0"] if args.steps
              else [f"train.max_seconds={args.seconds}", "train.steps=1000000000"])
    budget += [f"train.seed={args.seed}"] if args.seed else []
    cmd = [py, "-m", "mixgan", "train", "--model", model, "--dataset", args.dataset, "--out", str(out / label),
           "--device", args.device, "--quiet", "--set", "train.sample_every=1000000"]
    if args.dataset in DATA_DIRS:
        cmd += ["--data-dir", DATA_DIRS[args.dataset]]
    for s in budget + args.set + settings:
        cmd += ["--config", s] if s.endswith(".toml") else ["--set", s]
    return cmd


def run_all(cmds: list[list[str]], logs: list[Path], jobs: int) -> None:
    """Run the commands, ``jobs`` at a time, one thread each; fail on the first that fails."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    pending, running = list(zip(cmds, logs)), []
    while pending or running:
        while pending and len(running) < jobs:
            cmd, log = pending.pop(0)
            log.parent.mkdir(parents=True, exist_ok=True)
            running.append((subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env), log))
        time.sleep(1)
        for proc, log in list(running):
            if proc.poll() is not None:
                running.remove((proc, log))
                if proc.returncode:
                    sys.exit(f"failed ({proc.returncode}), see {log}:\n{log.read_text()[-2000:]}")


def entry_key(cmd: list[str]) -> list[str]:
    """What identifies an entry's training: its command without the interpreter and script paths."""
    return cmd[2:]


def same_settings(run: Path, cmd: list[str]) -> bool:
    """A library run in ``run`` holds the settings ``cmd`` resolves to today (a changed default
    retrains it); the baseline's settings live in this file."""
    if cmd[1] == __file__:
        return True
    from mixgan.cli import build_parser
    from mixgan.cli.train import resolve
    from mixgan.config import load_config

    wanted, held = resolve(build_parser().parse_args(cmd[3:]))[0].to_dict(), load_config(run / "config.toml").to_dict()
    for cfg in (wanted, held):  # without the encoder its settings are inert (and their defaults have moved)
        if not cfg["encoder"]["enabled"]:
            cfg.pop("encoder")
        cfg.pop("recipe")
    return held == wanted


def scored(out: Path, label: str, cmd: list[str]) -> bool:
    """Entry ``label`` in ``out`` was trained by ``cmd`` with today's defaults and scored (--steps:
    reused, not retrained; its result does not depend on what ran beside it)."""
    entry = out / f"{label}.entry.json"
    return ((out / label / "quality.json").exists() and entry.exists()
            and json.loads(entry.read_text()) == entry_key(cmd) and same_settings(out / label, cmd))


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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=600, help="training wall-clock of every entry")
    p.add_argument("--steps", type=int, default=0, help="train every entry for this many steps instead (0: use --seconds)")
    p.add_argument("--jobs", type=int, default=0,
                   help="entries trained at once (default: all with --seconds, the core count with --steps)")
    p.add_argument("--models", default="dcgan,gan,gmgan", help=f"comma list; '{BASELINE}' is the script baseline")
    p.add_argument("--variant", action="append", default=[], metavar="'LABEL=MODEL key=value ...'",
                   help="a library model with its own settings (key=value, or a .toml config file), trained beside the others")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a setting for every library model")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0, help="seed of the baseline and of every library model")
    p.add_argument("--eval-jobs", type=int, default=2, help="evaluations run at once")
    p.add_argument("--out", default="runs/quality", help="folder of the runs, quality.md and quality.json")
    p.add_argument("--baseline-worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    out = Path(args.out)
    if args.baseline_worker:
        import torch

        torch.set_num_threads(1)
        train_baseline(args.dataset, args.seconds, args.device, out, seed=args.seed, max_steps=args.steps)
        return
    todo = entries(args)
    cmds = {label: command(label, model, s, args, out) for label, model, s in todo}
    fresh = [e for e in todo if not (args.steps and scored(out, e[0], cmds[e[0]]))]
    out.mkdir(parents=True, exist_ok=True)
    for label, _, _ in fresh:
        (out / f"{label}.entry.json").write_text(json.dumps(entry_key(cmds[label])))
    jobs = args.jobs or (os.cpu_count() if args.steps else len(fresh))
    load = os.getloadavg()
    run_all([cmds[label] for label, _, _ in fresh], [out / f"{label}.train.log" for label, _, _ in fresh], jobs=jobs)
    load_after = os.getloadavg()
    py, evals = sys.executable, []
    for label, model, _ in fresh:
        samples = out / label / "samples.npz"
        steps = []
        if model != BASELINE:
            steps = [py, "-m", "mixgan", "sample", str(out / label), "--n", str(N_SAMPLES), "--out", str(samples)]
        ev = [py, "-m", "mixgan", "evaluate", "--samples", str(samples), "--dataset", args.dataset, "--quiet",
              "--json", str(out / label / "quality.json")]
        if args.dataset in DATA_DIRS:
            ev += ["--data-dir", DATA_DIRS[args.dataset]]
        evals.append(["bash", "-c", " && ".join(shlex.join(c) for c in (steps, ev) if c)])
    run_all(evals, [out / f"{label}.eval.log" for label, _, _ in fresh], jobs=args.eval_jobs)
    rows = []
    for label, model, settings in todo:
        result = json.loads((out / label / "quality.json").read_text())
        rows.append({"label": label, "model": model, "settings": args.set + settings,
                     "steps": steps_of(out / label), **{k: result[k] for k, _ in COLUMNS[1:] if k in result}})
    base = next((r for r in rows if r["model"] == BASELINE), None)
    for r in rows:
        if base is not None:
            r["fid_ratio"] = r["fid"] / base["fid"]
    text = table(rows)
    budget = (f"{args.steps} steps each, {jobs} at a time" if args.steps
              else f"{args.seconds:g} s each, {len(todo)} processes side by side")
    reused = [e[0] for e in todo if e not in fresh]
    if reused:
        budget += f" ({', '.join(reused)} reused from an earlier call)"
    head = (f"{budget} (1 thread each), device {args.device}, "
            f"dataset {args.dataset}, load average {load[0]:.2f} before, {load_after[0]:.2f} at the end of training")
    print(head + "\n\n" + text)
    (out / "quality.md").write_text(head + "\n\n" + text + "\n")
    (out / "quality.json").write_text(json.dumps({"seconds": args.seconds, "steps": args.steps, "device": args.device,
                                                  "dataset": args.dataset, "load": [load, load_after],
                                                  "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
