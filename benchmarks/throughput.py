"""Training throughput: the library loop against a minimal hand-written loop, and 2 processes.

    python -m benchmarks.throughput [--dataset fashion-mnist] [--batch-sizes 64,256] [--steps 40]
                                    [--rounds 3] [--threads 1] [--ddp] [--device cpu] [--smoke]

For each batch size, ``mixgan.training.train`` and a hand-written loop (same networks from
``build_model``, same data tensor, same Adam settings and losses, no seeding, logging or
checkpoints) run the same number of steps with the same thread count, alternating for
``--rounds`` rounds; each keeps its fastest round (the one least disturbed by other load).
Timing starts after ``--warmup`` steps and stops before the final checkpoint and grid are written.
``--ddp`` adds the library loop in 2 processes (gloo on CPU, NCCL on CUDA), each with the
given batch, so it handles twice the images per step. ``--dataset ring`` gives the toy-MLP
variant. Prints a Markdown table and appends it to ``benchmarks/results/throughput.md``.
``--smoke``: ring, batch 16, 8 steps, one round.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import mixgan
from mixgan.data import load_dataset
from mixgan.models import build_model
from mixgan.training import train
from mixgan.training.dist import resolve_device

from . import _harness


def config(dataset: str, batch: int, steps: int, out: str, device: str, extra: dict | None = None, data_dir: str = ""):
    """The dataset's preset, pinned to the settings the documented figures were measured with.

    EMA and learning-rate decay are off so that both loops do the same work per step (the
    hand-written loop has neither); the toy latent is 2-d as in the preset at the time.
    """
    values = {"model.name": "gmgan", "data.dataset": dataset, "train.batch_size": batch, "train.steps": steps,
              "train.log_every": steps, "train.sample_every": 10 ** 9, "train.checkpoint_every": 10 ** 9,
              "train.ema": False, "train.lr_decay": "none", "train.device": device, "out": out,
              "encoder.enabled": False,  # the hand-written loop has no encoder step
              "data.data_dir": data_dir}
    if dataset in ("ring", "grid"):
        values.update({"prior.components": 8 if dataset == "ring" else 25, "prior.latent_dim": 2})
    else:
        values["prior.components"] = 10
    values.update(extra or {})
    return mixgan.build_config(values)


def now() -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds): CPU time is what other load on a shared machine
    disturbs least, so the overhead ratio is taken from it."""
    return time.perf_counter(), time.process_time()


def per_step(t0: tuple[float, float], t1: tuple[float, float], steps: int) -> tuple[float, float]:
    return (t1[0] - t0[0]) / steps, (t1[1] - t0[1]) / steps


class StepClock:
    """A Progress that records when each step finished (the loop calls it after the step's work)."""

    def __init__(self):
        self.times: dict[int, tuple[float, float]] = {}

    def start(self, initial, total):
        pass

    def update(self, step, logs):
        self.times[step] = now()

    def close(self):
        pass


def library_seconds_per_step(cfg, warmup: int) -> tuple[float, float]:
    """(wall, CPU) seconds per step of ``mixgan.training.train``."""
    clock = StepClock()
    train(cfg, progress=clock)
    if not clock.times:  # a rank other than 0 under DDP: the loop reports on rank 0 only
        return float("nan"), float("nan")
    last = cfg.train.steps - 1  # the final step also writes a checkpoint and a grid: not timed
    return per_step(clock.times[warmup], clock.times[last], last - warmup)


def hand_seconds_per_step(cfg, warmup: int) -> tuple[float, float]:
    """The same networks and update rule, written as plainly as possible."""
    device = resolve_device(cfg.train.device)
    data = load_dataset(cfg.data.dataset, cfg.data.data_dir, seed=cfg.train.seed)
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg, data.spec(), device)
    G, D, opt_g, opt_d = model.G, model.D, model.opt_g, model.opt_d
    x = data.images().to(device)
    b, steps = cfg.train.batch_size, cfg.train.steps
    times = []
    for step in range(steps - 1):
        real = x[torch.randint(len(x), (b,), device=device)]
        eps, k = G.prior.draw(b, None, device=device)
        with torch.no_grad():
            fake = G(eps, k)
        loss_d = F.softplus(-D(real)).mean() + F.softplus(D(fake)).mean()
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        D.requires_grad_(False)
        eps, k = G.prior.draw(b, None, device=device)
        loss_g = F.softplus(-D(G(eps, k))).mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        D.requires_grad_(True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(now())
    return per_step(times[warmup - 1], times[-1], len(times) - warmup)


def _ddp_worker(rank, world, port, cfg_values, warmup, result_path):
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world)})
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    cfg = mixgan.build_config(cfg_values)
    seconds = library_seconds_per_step(cfg, warmup)
    if rank == 0:
        Path(result_path).write_text(json.dumps(seconds))


def ddp_seconds_per_step(cfg, warmup: int, world: int = 2) -> tuple[float, float]:
    """(wall, rank 0's CPU) seconds per step of the library loop in ``world`` processes."""
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    values = {f"{sec}.{k}": v for sec in ("data", "model", "prior", "train") for k, v in vars(getattr(cfg, sec)).items()}
    values["out"] = cfg.out
    result = Path(cfg.out + ".json")
    mp.start_processes(_ddp_worker, args=(world, port, values, warmup, str(result)), nprocs=world,
                       start_method="spawn")
    return tuple(json.loads(result.read_text()))


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="fashion-mnist")
    _harness.add_data_dir(ap)
    ap.add_argument("--batch-sizes", default="64,256")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--ddp", action="store_true", help="also time the library loop in 2 processes")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra settings (amp, compile...)")
    ap.add_argument("--smoke", action="store_true", help="seconds: ring, batch 16, 8 steps, one round")
    args = ap.parse_args(argv)
    if args.smoke:
        args.dataset, args.batch_sizes, args.steps, args.warmup, args.rounds = "ring", "16", 8, 2, 1
    folder = _harness.data_dir(args.dataset, args.data_dir)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    torch.set_num_threads(args.threads)
    extra = dict(s.split("=", 1) for s in args.set)
    scratch = Path(tempfile.mkdtemp(prefix="mixgan-bench-"))
    rows = []
    try:
        for batch in map(int, args.batch_sizes.split(",")):
            lib, hand = [], []  # (wall, cpu) seconds per step, one pair per round
            for r in range(args.rounds):
                cfg = config(args.dataset, batch, args.steps, str(scratch / f"lib-{batch}-{r}"), args.device, extra,
                             folder)
                lib.append(library_seconds_per_step(cfg, args.warmup))
                hand.append(hand_seconds_per_step(cfg, args.warmup))
                print(f"batch {batch} round {r}: library {batch / lib[-1][0]:.0f} img/s wall, "
                      f"{batch / lib[-1][1]:.0f} img/s CPU; hand {batch / hand[-1][0]:.0f} wall, "
                      f"{batch / hand[-1][1]:.0f} CPU", file=sys.stderr)
            cpu_ratio = [l[1] / h[1] for l, h in zip(lib, hand)]
            row = {"batch": batch,
                   "library_img_s_wall": batch / min(l[0] for l in lib), "hand_img_s_wall": batch / min(h[0] for h in hand),
                   "library_img_s_cpu": batch / min(l[1] for l in lib), "hand_img_s_cpu": batch / min(h[1] for h in hand),
                   "overhead_cpu_median": statistics.median(cpu_ratio) - 1,
                   "overhead_cpu_best": min(l[1] for l in lib) / min(h[1] for h in hand) - 1,
                   "overhead_wall_best": min(l[0] for l in lib) / min(h[0] for h in hand) - 1,
                   "library_s": lib, "hand_s": hand}
            if args.ddp:
                cfg = config(args.dataset, batch, args.steps, str(scratch / f"ddp-{batch}"), args.device, extra, folder)
                wall, cpu = ddp_seconds_per_step(cfg, args.warmup)
                row.update({"ddp2_img_s_wall": 2 * batch / wall, "ddp2_rank0_img_s_cpu": batch / cpu})
            rows.append(row)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    machine = f"{args.threads} thread(s) per process, device {args.device}"
    head = ("| batch | library img/s (wall) | hand-written img/s (wall) | library img/s (CPU time) "
            "| hand-written img/s (CPU time) | overhead, CPU time (median of rounds / best vs best) |")
    if args.ddp:
        head += " 2 processes img/s (wall) | 2 processes, rank 0 img/s (CPU time) |"
    lines = [f"gmgan on {args.dataset}, {args.steps} steps ({args.warmup} warm-up), {args.rounds} alternating rounds; "
             f"{machine}", "", head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        line = (f"| {r['batch']} | {r['library_img_s_wall']:.0f} | {r['hand_img_s_wall']:.0f} | "
                f"{r['library_img_s_cpu']:.0f} | {r['hand_img_s_cpu']:.0f} | "
                f"{100 * r['overhead_cpu_median']:+.1f}% / {100 * r['overhead_cpu_best']:+.1f}% |")
        if args.ddp:
            line += f" {r['ddp2_img_s_wall']:.0f} | {r['ddp2_rank0_img_s_cpu']:.0f} |"
        lines.append(line)
    table = "\n".join(lines)
    print(table)
    _harness.log_result("throughput", table, _harness.command_line("benchmarks.throughput", argv))
    return rows


if __name__ == "__main__":
    main()
