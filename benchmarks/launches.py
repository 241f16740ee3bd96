"""Kernel launches per training step, estimated on the CPU: what a small GAN's step costs on a GPU.

    OMP_NUM_THREADS=1 python -m benchmarks.launches [--dataset fashion-mnist] \
        [--variant 'LABEL=MODEL key=value ...'] [--steps 10] [--smoke]   (variants as in benchmarks.quality)

On a GPU these networks are bound by kernel launches and per-operation overhead, not arithmetic
(docs/gpu.md), so a step's cost is about the number of device operations it issues. This
counts them on the CPU as the dispatcher sees them (a ``TorchDispatchMode``, below autograd, so a
backward pass is counted too): every ATen operation except those that only make views, allocate or
read a host value, with Adam's multi-tensor path forced on as CUDA uses it (one operation per
multi-tensor kernel). Setup, the final sampling and checkpoint cancel out: each entry runs
``--steps`` and ``2 * --steps`` steps, and the count is the difference divided by ``--steps``.
Entries: the script DCGAN of ``benchmarks.quality``, the library's defaults for ``gan`` and
``gmgan``, both with the previous image recipe (recipe ``image-dcgan-ns``), and any
``--variant``. ``--by-op`` adds each entry's most frequent operations. The table is appended to
``benchmarks/results/launches.md``. Every entry first runs one step uncounted, so that what is cached once (the reference classifier,
an encoder, neighbour lists) is not counted. ``--smoke``: digits, 2 steps, the script, gan and
gmgan (its encoder on pixels, from scratch).
"""
from __future__ import annotations

import argparse
import tempfile
from collections import Counter
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

import mixgan

from . import _harness

# operations that only make views, allocate, read a host value or mark a profiler range: no kernel of their own
NO_KERNEL = {"empty", "empty_strided", "empty_like", "new_empty", "new_empty_strided", "view", "_unsafe_view",
             "as_strided", "reshape", "_reshape_alias", "t", "transpose", "permute", "expand", "squeeze",
             "unsqueeze", "slice", "select", "narrow", "detach", "alias", "split", "split_with_sizes", "unbind",
             "unflatten", "flatten", "lift_fresh", "_to_copy_noop", "_local_scalar_dense",
             "_record_function_enter_new", "_record_function_exit"}


class Count(TorchDispatchMode):
    """Counts the device operations dispatched inside it, by ATen name."""

    def __init__(self):
        super().__init__()
        self.ops: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._schema.name.split("::", 1)[1]
        if name not in NO_KERNEL:
            self.ops[name] += 1
        return func(*args, **(kwargs or {}))


def device_ops(fn) -> Counter:
    with Count() as count:
        fn()
    return count.ops


class MultiTensorAdam(torch.optim.Adam):
    """Adam as CUDA runs it by default: the multi-tensor (foreach) path."""

    def __init__(self, params, **kwargs):
        kwargs.setdefault("foreach", True)
        super().__init__(params, **kwargs)


def library(model: str, settings: list[str], dataset: str, data_dir: str, steps: int):
    def run():
        with tempfile.TemporaryDirectory() as tmp:
            values = {"model.name": model, "data.dataset": dataset, "data.data_dir": data_dir,
                      "train.steps": steps, "train.log_every": 10 ** 9, "train.sample_every": 10 ** 9,
                      "train.checkpoint_every": 10 ** 9, "out": tmp}
            files = [s for s in settings if s.endswith(".toml")]  # as in benchmarks.quality's variants
            overrides = [s for s in settings if not s.endswith(".toml")]
            mixgan.train(mixgan.build_config(values, config_file=files[-1] if files else None, overrides=overrides))
    return run


def script(dataset: str, data_dir: str, steps: int):
    def run():
        with tempfile.TemporaryDirectory() as tmp:
            _harness.train_baseline(dataset, 0, "cpu", Path(tmp), max_steps=steps, n_samples=10, data_folder=data_dir)
    return run


def main(argv: list[str] | None = None) -> list[tuple[str, float]]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="fashion-mnist")
    _harness.add_data_dir(p)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--variant", action="append", default=[], metavar="'LABEL=MODEL key=value ...'")
    p.add_argument("--by-op", type=int, default=0, metavar="N", help="also list each entry's N most frequent operations")
    p.add_argument("--smoke", action="store_true", help="seconds: digits, 2 steps, the script, gan and gmgan (its encoder on pixels, from scratch)")
    args = p.parse_args(argv)
    if args.smoke:
        args.dataset, args.steps = "digits", 2
    folder = _harness.data_dir(args.dataset, args.data_dir)
    torch.set_num_threads(1)
    previous = [f"{k}={v}" for k, v in _harness.previous_image_recipe().items()]
    entries = [("script DCGAN", None, []), ("gan", "gan", []), ("gmgan", "gmgan", []),
               ("gan, previous recipe", "gan", previous), ("gmgan, previous recipe", "gmgan", previous)]
    if args.smoke:  # gmgan's encoder on pixels, from scratch: the contrastive encoder takes minutes to train once
        entries = [entries[0], entries[1], ("gmgan", "gmgan", ["encoder.init=scratch", "encoder.space=pixels"])]
    else:
        entries += [_harness.parse_variant(text) for text in args.variant]
    rows = []
    adam, torch.optim.Adam = torch.optim.Adam, MultiTensorAdam  # the CPU's default would loop over the parameters
    try:
        for label, model, settings in entries:
            make = (lambda n: script(args.dataset, folder, n)) if model is None else (
                lambda n: library(model, settings, args.dataset, folder, n))
            make(1)()  # fills what is cached once (reference classifier, encoders, neighbours) outside the count
            once, twice = device_ops(make(args.steps)), device_ops(make(2 * args.steps))
            rows.append((label, {op: (twice[op] - once[op]) / args.steps for op in twice}))
    finally:
        torch.optim.Adam = adam
    totals = [sum(ops.values()) for _, ops in rows]
    lines = [f"device operations per training step ({args.dataset}, {args.steps} and {2 * args.steps} steps, "
             "counted at the dispatcher on the CPU, Adam multi-tensor)", "",
             "| entry | operations per step | / script |", "|---|---|---|"]
    lines += [f"| {label} | {total:.0f} | {total / totals[0]:.2f} |" for (label, _), total in zip(rows, totals)]
    for label, ops in rows if args.by_op else ():
        top = sorted(ops.items(), key=lambda kv: -kv[1])[:args.by_op]
        lines += ["", f"{label}: " + ", ".join(f"{op} {n:g}" for op, n in top if n)]
    text = "\n".join(lines)
    print(text)
    _harness.log_result("launches", text, _harness.command_line("benchmarks.launches", argv))
    return list(zip([label for label, _ in rows], totals))


if __name__ == "__main__":
    main()
