"""mixgan info: what a run is and how far it got."""
from __future__ import annotations

import argparse

from ..training import RunDir
from ..training.checkpoint import scan_checkpoints
from .common import describe_config


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("info", help="describe a run", description="Model, dataset, steps done and settings of a run.")
    p.add_argument("run", help="run directory")
    return p


def run(args) -> int:
    rd = RunDir(args.run)
    cfg = rd.config()
    found, damaged = scan_checkpoints(rd.checkpoints)
    done = found[1]["step"] if found else 0
    stats = rd.read_stats()
    print(f"run:      {rd.path}")
    print(f"model:    {cfg.model.name}")
    print(f"dataset:  {cfg.data.dataset}")
    print(f"steps:    {done} of {cfg.train.steps} (checkpointed)")
    for d in damaged:
        print(f"damaged:  step {d.step}, {d.path} ({d.reason}): skipped")
    if stats:
        last = stats[-1]
        print("last log: " + ", ".join(f"{k}={v}" for k, v in last.items() if k != "time"))
    print("settings:")
    print("  " + describe_config(cfg).replace("\n", "\n  "))
    return 0
