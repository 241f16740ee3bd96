"""Kernel launches per training step, estimated on the CPU: what a small GAN's step costs on a GPU.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/launches.py [--dataset fashion-mnist] \
        [--variant 'LABEL=MODEL key=value ...'] [--steps 10]   (variants as in benchmarks/quality.py)

On a GPU these networks are bound by kernel launches, not arithmetic (docs/quality.md), so a
step's cost is about the number of device operations it issues. This counts them with the
PyTorch profiler on the CPU: every leaf ATen operation that does work (view and allocation
operations are left out), with Adam's multi-tensor path forced on as CUDA uses it. Setup, the
final sampling and checkpoint cancel out: each entry runs ``--steps`` and ``2 * --steps`` steps,
and the count is the difference divided by ``--steps``. Entries: the script DCGAN of
``benchmarks/quality.py``, the library's defaults for ``gan`` and ``gmgan`` (the encoder GM-GAN on
images), both with the recipe before docs/quality.md (``previous``: what issue #13's H200 run
timed), and any ``--variant``.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import mixgan  # noqa: E402
from mixgan.config import PREVIOUS_IMAGE_RECIPE  # noqa: E402
from quality import DATA_DIRS, train_baseline, variant  # noqa: E402

# leaf operations that only make views or allocate, with no kernel of their own
NO_KERNEL = {"empty", "empty_strided", "empty_like", "view", "_unsafe_view", "as_strided", "reshape",
             "_reshape_alias", "t", "transpose", "permute", "expand", "expand_as", "squeeze", "unsqueeze",
             "slice", "select", "narrow", "detach", "detach_", "alias", "resolve_conj", "resolve_neg",
             "lift_fresh", "split", "unbind", "chunk", "contiguous", "view_as", "flatten", "unflatten",
             "result_type", "is_nonzero", "set_", "_has_compatible_shallow_copy_type", "size", "stride",
             "numel", "dim", "is_same_size", "requires_grad_", "retain_grad", "_to_copy_noop"}


def device_ops(fn) -> int:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    count = 0
    for event in prof.events():
        name, parent, inside_foreach = event.name, event.cpu_parent, False
        while parent is not None and not inside_foreach:
            inside_foreach, parent = parent.name.startswith("aten::_foreach_"), parent.cpu_parent
        if inside_foreach:  # the CPU runs a multi-tensor op tensor by tensor; CUDA launches it once
            continue
        if name.startswith("aten::_foreach_") or (
                name.startswith("aten::") and not event.cpu_children and name[6:] not in NO_KERNEL):
            count += 1
    return count


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
        per_step = (device_ops(make(2 * args.steps)) - device_ops(make(args.steps))) / args.steps
        rows.append((label, per_step))
    base = rows[0][1]
    print(f"device operations per training step ({args.dataset}, {args.steps} and {2 * args.steps} steps, "
          "CPU profiler, Adam multi-tensor)\n")
    print("| entry | operations per step | / script |\n|---|---|---|")
    for label, n in rows:
        print(f"| {label} | {n:.0f} | {n / base:.2f} |")


if __name__ == "__main__":
    main()
