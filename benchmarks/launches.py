"""Kernel launches per training step, estimated on the CPU: what a small GAN's step costs on a GPU.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/launches.py [--dataset fashion-mnist] \
        [--variant 'LABEL=MODEL key=value ...'] [--steps 10]   (variants as in benchmarks/quality.py)

On a GPU these networks are bound by kernel launches and per-operation overhead, not arithmetic
(docs/quality.md), so a step's cost is about the number of device operations it issues. This
counts them on the CPU as the dispatcher sees them (a ``TorchDispatchMode``, below autograd, so a
backward pass is counted too): every ATen operation except those that only make views, allocate or
read a host value, with Adam's multi-tensor path forced on as CUDA uses it (one operation per
multi-tensor kernel). Setup, the final sampling and checkpoint cancel out: each entry runs
``--steps`` and ``2 * --steps`` steps, and the count is the difference divided by ``--steps``.
Entries: the script DCGAN of ``benchmarks/quality.py``, the library's defaults for ``gan`` and
``gmgan`` (the encoder GM-GAN on images), both with the recipe before docs/quality.md
(``previous``: what issue #13's H200 run timed), and any ``--variant``. ``--by-op`` prints each
entry's most frequent operations.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import mixgan  # noqa: E402
from mixgan.config import Recipe  # noqa: E402

PREVIOUS_IMAGE_RECIPE = Recipe.read("image-dcgan-ns").values
from quality import DATA_DIRS, train_baseline, variant  # noqa: E402

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


def library(model: str, settings: list[str], dataset: str, steps: int):
    def run():
        with tempfile.TemporaryDirectory() as tmp:
            values = {"model.name": model, "data.dataset": dataset, "data.data_dir": DATA_DIRS.get(dataset, ""),
                      "train.steps": steps, "train.log_every": 10 ** 9, "train.sample_every": 10 ** 9,
                      "train.checkpoint_every": 10 ** 9, "out": tmp}
            files = [s for s in settings if s.endswith(".toml")]  # as in quality.py's variants
            overrides = [s for s in settings if not s.endswith(".toml")]
            mixgan.train(mixgan.build_config(values, config_file=files[-1] if files else None, overrides=overrides))
    return run


def script(dataset: str, steps: int):
    def run():
        with tempfile.TemporaryDirectory() as tmp:
            train_baseline(dataset, 0, "cpu", Path(tmp), max_steps=steps)
    return run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--variant", action="append", default=[], metavar="'LABEL=MODEL key=value ...'")
    p.add_argument("--by-op", type=int, default=0, metavar="N", help="also print each entry's N most frequent operations")
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.optim.Adam = MultiTensorAdam  # the CPU's default would loop over the parameters
    previous = [f"{k}={v}" for k, v in PREVIOUS_IMAGE_RECIPE.items()]
    entries = [("script DCGAN", None, []), ("gan", "gan", []), ("gmgan", "gmgan", []),
               ("gan, previous recipe", "gan", previous), ("gmgan, previous recipe", "gmgan", previous)]
    entries += [variant(text) for text in args.variant]
    rows = []
    for label, model, settings in entries:
        make = (lambda n: script(args.dataset, n)) if model is None else (
            lambda n: library(model, settings, args.dataset, n))
        once, twice = device_ops(make(args.steps)), device_ops(make(2 * args.steps))
        rows.append((label, {op: (twice[op] - once[op]) / args.steps for op in twice}))
    totals = [sum(ops.values()) for _, ops in rows]
    print(f"device operations per training step ({args.dataset}, {args.steps} and {2 * args.steps} steps, "
          "counted at the dispatcher on the CPU, Adam multi-tensor)\n")
    print("| entry | operations per step | / script |\n|---|---|---|")
    for (label, _), total in zip(rows, totals):
        print(f"| {label} | {total:.0f} | {total / totals[0]:.2f} |")
    for label, ops in rows if args.by_op else ():
        top = sorted(ops.items(), key=lambda kv: -kv[1])[:args.by_op]
        print(f"\n{label}: " + ", ".join(f"{op} {n:g}" for op, n in top if n))


if __name__ == "__main__":
    main()
