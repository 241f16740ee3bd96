"""How fast one training step is, against what the machine's CPU can do.

For every model and resolution: one full training step (``d_steps`` D updates and one G update:
forward, backward, Adam, EMA) as ``mixgan train`` makes it from the defaults, on a real colour
set (the emoji of :func:`_harness.emoji_folder`, resized). Its floating-point work is counted
with ``torch.utils.flop_counter.FlopCounterMode`` (matmuls and convolutions, forward and
backward), its time is the best of ``--rounds`` rounds of ``--steps`` steps, and the machine's
peak is a large float32 matmul on the same threads, measured before and after every entry in
the same process (the CPU is shared: peak and step see the same load). The single-file DCGAN
script's step (``_harness.baseline_nets``, batch 64) is measured the same way.

    OMP_NUM_THREADS=1 python -m benchmarks.step_speed --models gan,gmgan,cgan,acgan,icgan \\
        --resolutions 32,64,128 [--threads 1] [--set key=value] [--profile 64]

``--set`` applies to every library model (``train.channels_last=true``, ``model.width=32``...),
``--variant 'LABEL key=value ...'`` adds the same models with other settings beside them; the
setting ``adam=for-loop|foreach|fused`` rebuilds the model's Adam optimizers with that implementation.
``--profile R`` adds where the time goes at resolution R (torch.profiler, self CPU time by op).
Appends img/s, GFLOP/step, GFLOP/s and the fraction of peak to
``benchmarks/results/step_speed.md``. ``--smoke``: gan and the script at 32 px, one step.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from . import _harness

SCRIPT = "script"  # the label of the single-file DCGAN script's step


def peak_gflops(n: int = 1024, reps: int = 5) -> tuple[float, float]:
    """The best GFLOP/s of an n x n float32 matmul on this process's threads: per wall-clock
    second, and per second of this process's CPU time (which other jobs on the machine disturb least)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    wall = cpu = float("inf")
    for _ in range(reps):
        t, c = time.perf_counter(), time.process_time()
        torch.mm(a, b)
        wall, cpu = min(wall, time.perf_counter() - t), min(cpu, time.process_time() - c)
    return 2 * n ** 3 / wall / 1e9, 2 * n ** 3 / max(cpu, 1e-9) / 1e9


class LibraryStep:
    """One model's training step as the training loop makes it (same data path, seeds, memory format)."""

    def __init__(self, model_name: str, data, folder: str, resolution: int, settings: list[str]):
        import mixgan
        from mixgan.models import build_model
        from mixgan.training.loop import BatchStream, _memory_format, settings_from_data, step_seed

        adam = [s.split("=", 1)[1] for s in settings if s.startswith("adam=")]
        settings = [s for s in settings if not s.startswith("adam=")]
        self.cfg = mixgan.build_config({"model.name": model_name, "data.dataset": "folder", "data.data_dir": folder,
                                        "data.resolution": resolution, "train.device": "cpu"}, overrides=settings)
        settings_from_data(self.cfg, data.shape, data.num_classes)  # the width and K a run would take
        t = self.cfg.train
        torch.manual_seed(t.seed)
        self.batch_size = t.batch_size
        self.model = build_model(self.cfg, data.spec(), "cpu")
        self.model.attach_data(data)
        self.adam = adam[-1] if adam else ""
        if self.adam:
            kind = {"for-loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}[self.adam]
            for name, opt in self.model.optimizers().items():
                groups = [{"params": g["params"], "lr": g["lr"]} for g in opt.param_groups]
                setattr(self.model, name, torch.optim.Adam(groups, betas=opt.param_groups[0]["betas"], **kind))
        self.fmt = _memory_format(self.cfg, data)
        if self.fmt is not None:
            self.model.G.to(memory_format=self.fmt)
            self.model.D.to(memory_format=self.fmt)
        if t.compile:
            self.model.G.net.compile()
            self.model.D.compile()
        self.stream = BatchStream(len(data.x_train), t.batch_size, t.seed, 0, 1, "cpu")
        self.seed_of = lambda s, r: step_seed(t.seed, s, r)
        self.gen = torch.Generator()
        self.step_no = 0

    def __call__(self) -> None:
        d = self.cfg.train.d_steps
        s, self.step_no = self.step_no, self.step_no + 1
        torch.default_generator.manual_seed(self.seed_of(s, 0))
        self.gen.manual_seed(self.seed_of(s, 1))
        draws = iter(range(s * d, (s + 1) * d))

        def next_batch(b):
            batch = self.model.batch(self.stream(b))
            if self.fmt is not None:
                batch.x = batch.x.contiguous(memory_format=self.fmt)
            return batch

        self.model.step = s
        self.model.train_step(lambda: next_batch(next(draws)), self.gen)

    def describe(self) -> str:
        m, t = self.cfg.model, self.cfg.train
        adam = self.model.opt_d.defaults
        impl = "fused" if adam.get("fused") else "foreach" if adam.get("foreach") else "for-loop"
        return (f"{m.arch} w{m.width}, batch {t.batch_size}, d_steps {t.d_steps}, sn {m.spectral_norm}, "
                f"augment '{t.augment}', channels_last {t.channels_last}, Adam {impl}")


class ScriptStep:
    """The single-file DCGAN script's step (BCE, Adam 2e-4, batch 64), as ``_harness.train_baseline`` runs it."""

    def __init__(self, data):
        torch.manual_seed(0)
        self.x = data.images()
        self.G, self.D = _harness.baseline_nets(self.x.shape[1], self.x.shape[2])
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.batch_size = 64
        self.ones, self.zeros = torch.ones(64, 1), torch.zeros(64, 1)

    def __call__(self) -> None:
        real = self.x[torch.randint(len(self.x), (64,))]
        fake = self.G(torch.randn(64, 100))
        loss_d = (F.binary_cross_entropy_with_logits(self.D(real), self.ones)
                  + F.binary_cross_entropy_with_logits(self.D(fake.detach()), self.zeros)) / 2
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_d.step()
        loss_g = F.binary_cross_entropy_with_logits(self.D(fake), self.ones)
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()

    def describe(self) -> str:
        return "script DCGAN, batch 64"


def step_flops(step) -> float:
    """Floating-point operations of one call of ``step`` (matmuls and convolutions, forward and backward)."""
    with FlopCounterMode(display=False) as counter:
        step()
    return float(counter.get_total_flops())


def time_steps(step, steps: int) -> tuple[float, float]:
    """(wall, CPU) seconds per step over ``steps`` steps."""
    w, c = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    return (time.perf_counter() - w) / steps, (time.process_time() - c) / steps


def profile(step, top: int = 8) -> list[tuple[str, float]]:
    """(op, share of self CPU time) of the ``top`` ops of two steps."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
        step()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    ranked = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    return [(e.key, e.self_cpu_time_total / total) for e in ranked]


def measure(step, steps: int, rounds: int, warmup: int) -> dict:
    for _ in range(warmup):
        step()
    flops = step_flops(step)
    walls, cpus, peaks = [], [], [peak_gflops()]
    for _ in range(rounds):
        wall, cpu = time_steps(step, steps)
        walls.append(wall)
        cpus.append(cpu)
        peaks.append(peak_gflops())
    # each round against the peak measured just before and after it; the best round is the least disturbed
    fractions = [flops / w / 1e9 / max(peaks[i][0], peaks[i + 1][0]) for i, w in enumerate(walls)]
    best = max(range(rounds), key=lambda i: fractions[i])
    wall, cpu = walls[best], min(cpus)
    peak_cpu = max(p[1] for p in peaks)
    return {"img_s": step.batch_size / wall, "s_step": wall, "cpu_s_step": cpu, "gflop": flops / 1e9,
            "gflops": flops / wall / 1e9, "peak": max(peaks[best][0], peaks[best + 1][0]), "fraction": fractions[best],
            "peak_cpu": peak_cpu, "fraction_cpu": flops / cpu / 1e9 / peak_cpu, "setting": step.describe()}


def table(rows: list[dict]) -> str:
    lines = ["| px | model | setting | img/s | s/step | CPU s/step | GFLOP/step | GFLOP/s | peak GFLOP/s | fraction of peak "
             "| GFLOP per CPU s | peak per CPU s | fraction of peak, CPU time |", "|---" * 13 + "|"]
    for r in rows:
        lines.append(f"| {r['px']} | {r['label']} | {r['setting']} | {r['img_s']:.1f} | {r['s_step']:.3f} | {r['cpu_s_step']:.3f} | "
                     f"{r['gflop']:.2f} | {r['gflops']:.1f} | {r['peak']:.1f} | {r['fraction']:.2f} | "
                     f"{r['gflop'] / r['cpu_s_step']:.1f} | {r['peak_cpu']:.1f} | {r['fraction_cpu']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="gan,gmgan,cgan,acgan,icgan", help=f"comma list; '{SCRIPT}' is the DCGAN script")
    p.add_argument("--resolutions", default="32,64,128")
    p.add_argument("--steps", type=int, default=3, help="steps per timed round")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS") or 1))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a setting for every library model")
    p.add_argument("--variant", action="append", default=[], metavar="'LABEL key=value ...'",
                   help="the same models again with these settings")
    p.add_argument("--data-dir", default="", help="a folder of images to step on (default: the emoji)")
    p.add_argument("--profile", type=int, default=0, metavar="R", help="where the time goes at resolution R")
    p.add_argument("--no-script", action="store_true", help="leave out the DCGAN script's step")
    p.add_argument("--smoke", action="store_true", help="seconds: gan and the script at 32 px, one step, one round")
    args = p.parse_args(argv)
    if args.smoke:
        args.models, args.resolutions, args.steps, args.rounds, args.warmup = "gan", "32", 1, 1, 0
    torch.set_num_threads(args.threads)
    from mixgan.data import load_dataset

    folder = args.data_dir or str(_harness.emoji_folder())
    source = f"the images of {folder}" if args.data_dir else f"real colour images (emoji, {_harness.EMOJI_PACKAGE})"
    variants = [("", [])] + [(t.split()[0], t.split()[1:]) for t in args.variant]
    load = os.getloadavg()
    rows, profiles = [], []
    for px in map(int, args.resolutions.split(",")):
        data = load_dataset("folder", folder, resolution=px, channels=3)
        entries = [] if args.no_script else [(SCRIPT, lambda: ScriptStep(data))]
        for model in filter(None, args.models.split(",")):
            for label, extra in variants:
                entries.append((model + (f" {label}" if label else ""),
                                lambda m=model, e=extra: LibraryStep(m, data, folder, px, args.set + e)))
        for label, make in entries:
            step = make()
            row = {"px": px, "label": label, **measure(step, args.steps, args.rounds, args.warmup)}
            rows.append(row)
            print(f"{px} px {label}: {row['img_s']:.1f} img/s, {row['gflop']:.2f} GFLOP/step, "
                  f"{row['fraction']:.2f} of {row['peak']:.0f} GFLOP/s", file=sys.stderr)
            if px == args.profile:
                profiles.append((label, profile(step)))
    text = (f"{args.threads} thread(s); {source} at each resolution; "
            f"best of {args.rounds} rounds of {args.steps} steps after {args.warmup} warm-up; peak: float32 "
            f"1024x1024 matmul on the same threads, measured before and after each round in the same process. "
            f"The CPU is shared with other jobs: load average {load[0]:.2f} at the start, "
            f"{os.getloadavg()[0]:.2f} at the end. Wall-clock rates move with the load; the fraction of "
            f"peak by CPU time (the step's and the matmul's work per second of this process's CPU time) "
            f"is the figure least disturbed by it.\n\n" + table(rows))
    if args.set:
        text += "\n\nSettings for every library model: " + ", ".join(f"`{s}`" for s in args.set)
    for label, ops in profiles:
        text += (f"\n\nWhere the time goes, {label} at {args.profile} px (self CPU time): "
                 + ", ".join(f"{name} {share:.0%}" for name, share in ops))
    print(text)
    _harness.log_result("step_speed", text, _harness.command_line("benchmarks.step_speed", argv))
    return rows


if __name__ == "__main__":
    main()
