"""Feedback from the first minute: when a training run first shows something, on a first start and on a resume.

    python -m benchmarks.first_minute [--dataset fashion-mnist] [--model gmgan] [--steps 100]
                                      [--set KEY=VALUE ...] [--smoke]

Runs ``mixgan train`` (the dataset's default recipe) in a fresh process with an empty cache, then
``--resume`` of the same run for as many steps more, and watches the run folder: the seconds from
the process's start to its first line of output, samples/real.png, the first sample grid and the
first stats line, and the preparations it announced (what, and how long each took). The second
start must announce none of the first start's cached preparations (neighbour search, encoder).
Appends a Markdown table to ``benchmarks/results/first_minute.md`` (a file kept from the first
start shows '-'). ``--smoke``: digits, 6 steps, no contrastive encoder.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from . import _harness

DONE = re.compile(r"^mixgan: (.+): done in ([0-9.]+) s$")


def watch(cmd: list[str], run: Path, env: dict) -> dict:
    """Seconds from the start of ``cmd`` to its first output line and to the run's first files, and
    the tasks it announced as (what, seconds)."""
    began = time.perf_counter()
    seen: dict[str, float] = {}
    lines: list[str] = []
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)

    def read():
        for line in proc.stdout:
            seen.setdefault("first line", time.perf_counter() - began)
            lines.append(line.rstrip("\n"))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    before = set((run / "samples").glob("*.png")) if (run / "samples").is_dir() else set()
    logged = (run / "stats.jsonl").stat().st_size if (run / "stats.jsonl").exists() else 0
    while proc.poll() is None:
        now = time.perf_counter() - began
        if (run / "samples" / "real.png").exists() and run / "samples" / "real.png" not in before:
            seen.setdefault("real.png", now)
        if (run / "samples").is_dir() and set((run / "samples").glob("step-*.png")) - before:
            seen.setdefault("first grid", now)
        if (run / "stats.jsonl").exists() and (run / "stats.jsonl").stat().st_size > logged:
            seen.setdefault("first log line", now)
        time.sleep(0.05)
    reader.join()
    if proc.returncode != 0:
        raise RuntimeError("training failed:\n" + "\n".join(lines[-20:]))
    seen["total"] = time.perf_counter() - began
    seen["tasks"] = [(m.group(1), float(m.group(2))) for m in map(DONE.match, lines) if m]
    return seen


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--model", default="gmgan")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--smoke", action="store_true")
    _harness.add_data_dir(p)
    args = p.parse_args(argv)
    if args.smoke:
        args.dataset, args.steps = "digits", 6
        args.set = args.set + ["encoder.init=scratch", "encoder.space=pixels", "train.log_every=3"]
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        env = dict(os.environ, MIXGAN_CACHE=str(Path(tmp) / "cache"), PYTHONPATH=str(_harness.ROOT))
        base = [sys.executable, "-m", "mixgan", "train", "--model", args.model, "--dataset", args.dataset,
                "--device", "cpu", "--out", str(run)]
        where = _harness.data_dir(args.dataset, args.data_dir)
        base += ["--data-dir", where] if where else []
        sets = [x for s in args.set for x in ("--set", s)]
        first = watch(base + ["--steps", str(args.steps)] + sets, run, env)
        again = watch(base + ["--steps", str(2 * args.steps), "--resume"], run, env)

    def cell(r, key):
        return f"{r[key]:.1f}" if key in r else "-"

    def tasks(r):
        return "; ".join(f"{what} {s:.1f} s" for what, s in r["tasks"]) or "none"

    keys = ["first line", "real.png", "first grid", "first log line", "total"]
    rows = [f"| {name} | " + " | ".join(cell(r, k) for k in keys) + f" | {tasks(r)} |"
            for name, r in (("first start", first), ("resume", again))]
    body = "\n".join([f"{args.dataset}, {args.model}, {args.steps} steps then {args.steps} more on resume; "
                      f"settings: {', '.join(args.set) or 'the recipe'}; seconds from the process's start", "",
                      "| start | " + " | ".join(keys) + " | preparations announced |",
                      "|---" * (len(keys) + 2) + "|", *rows])
    _harness.log_result("first_minute", body, _harness.command_line("benchmarks.first_minute", argv))
    print(body)
    return {"first": first, "resume": again}


if __name__ == "__main__":
    main()
