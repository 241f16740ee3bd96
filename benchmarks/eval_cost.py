"""The cost of quality during training (``train.eval_every``): the same run without and with it.

Each pair trains the dataset's default model twice back to back, seed and steps equal, once with
``train.eval_every=0`` and once with the default schedule, and reports the ratio of their wall-clocks
and the share of the second run spent in evaluation (the ``eval_s`` of its stats.jsonl). The machine
may be shared: the ratio of two runs made back to back is what to read, not either time alone.
The reference classifier and its real features are computed before the first run (a one-time cost
per dataset, cached). Usage:

    OMP_NUM_THREADS=2 python -m benchmarks.eval_cost [--dataset digits] [--steps 1000] [--pairs 2]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._harness import add_data_dir, command_line, data_dir, log_result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--model", default="gmgan")
    parser.add_argument("--steps", type=int, default=1000,
                        help="steps per run (the share does not depend on it once it is a multiple of eval_every)")
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    add_data_dir(parser)
    args = parser.parse_args(argv)
    import mixgan
    from mixgan.data import load_dataset
    from mixgan.training.quality import TrainingEval

    values = {"data.dataset": args.dataset, "data.data_dir": data_dir(args.dataset, args.data_dir),
              "model.name": args.model, "train.steps": args.steps, "train.device": args.device}
    default = mixgan.build_config(values)
    every, n = default.train.eval_every, default.train.eval_samples
    if not every:
        sys.exit(f"eval_cost: {args.dataset} has no default eval schedule (train.eval_every = 0)")
    data = load_dataset(default.data.dataset, default.data.data_dir, seed=default.train.seed,
                        test_fraction=default.data.test_fraction)
    TrainingEval(data, n, args.device, seed=default.train.seed)  # the classifier and real features, cached
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for pair in range(args.pairs):
            seconds = {}
            for label, schedule in (("off", 0), ("on", every)):
                cfg = mixgan.build_config({**values, "train.eval_every": schedule, "out": f"{tmp}/{pair}-{label}"})
                t0 = time.perf_counter()
                run = mixgan.train(cfg)
                seconds[label] = time.perf_counter() - t0
                if label == "on":
                    stats = [json.loads(l) for l in Path(run.path / "stats.jsonl").read_text().splitlines()]
                    evals = [r for r in stats if "eval_s" in r]
                    inside = sum(r["eval_s"] for r in evals)
                    fids = [r["fid"] for r in evals]
            rows.append((pair, seconds["off"], seconds["on"], seconds["on"] / seconds["off"], len(evals), inside,
                         inside / seconds["on"], fids[0], fids[-1]))
    body = [f"{args.model} on {args.dataset}, {args.steps} steps, eval every {every} steps of {n} samples "
            f"({args.device}); runs without and with evaluation made back to back on a possibly shared machine.",
            "", "| pair | without eval (s) | with eval (s) | ratio | evaluations | time in eval (s) | eval share | "
            "first FID | last FID |", "|---|---|---|---|---|---|---|---|---|"]
    body += [f"| {p} | {a:.1f} | {b:.1f} | {r:.3f} | {k} | {e:.2f} | {s:.1%} | {f0:.2f} | {f1:.2f} |"
             for p, a, b, r, k, e, s, f0, f1 in rows]
    text = "\n".join(body)
    print(text)
    path = log_result("eval_cost", text, command_line("benchmarks.eval_cost", argv))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
