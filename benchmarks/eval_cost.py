"""The cost of quality during training (``train.eval_every``): the same run without and with it.

Each pair trains the dataset's default model twice back to back, seed and steps equal, once with
``train.eval_every=0`` and once with the default schedule, and reports the ratio of their wall-clocks
(and of their process CPU times, less disturbed by other work on the machine) and the share of the
second run spent in evaluation (the ``eval_s`` of its stats.jsonl). The machine
may be shared: the ratio of two runs made back to back is what to read, not either time alone.
A two-step warm-up run comes first, so that one-time costs (the reference classifier and its real
features, a pretrained encoder; cached per dataset) fall in neither; the pairs alternate which of the
two runs goes first. Usage:

    OMP_NUM_THREADS=2 python -m benchmarks.eval_cost [--dataset digits] [--steps 1000] [--pairs 2] [--smoke]

``--smoke``: seconds; gan, width 16, 40 steps, an evaluation of 200 samples every 20 steps, one pair.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._harness import add_data_dir, command_line, data_dir, log_result


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--model", default="gmgan")
    parser.add_argument("--steps", type=int, default=1000,
                        help="steps per run (the share does not depend on it once it is a multiple of eval_every)")
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--smoke", action="store_true", help="seconds: gan, width 16, 40 steps, one pair")
    add_data_dir(parser)
    args = parser.parse_args(argv)
    smoke = {"model.name": "gan", "model.width": 16, "train.steps": 40, "train.eval_every": 20,
             "train.eval_samples": 200} if args.smoke else {}
    if args.smoke:
        args.pairs, args.model, args.steps = 1, "gan", 40
    import mixgan

    values = {"data.dataset": args.dataset, "data.data_dir": data_dir(args.dataset, args.data_dir),
              "model.name": args.model, "train.steps": args.steps, "train.device": args.device, **smoke}
    default = mixgan.build_config(values)
    every, n = default.train.eval_every, default.train.eval_samples
    if not every:
        sys.exit(f"eval_cost: {args.dataset} has no default eval schedule (train.eval_every = 0)")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        mixgan.train(mixgan.build_config({**values, "train.steps": 2, "train.eval_every": 1, "out": f"{tmp}/warm-up"}))
        for pair in range(args.pairs):
            seconds, cpu = {}, {}
            order = (("off", 0), ("on", every)) if pair % 2 == 0 else (("on", every), ("off", 0))
            for label, schedule in order:
                cfg = mixgan.build_config({**values, "train.eval_every": schedule, "out": f"{tmp}/{pair}-{label}"})
                t0, c0 = time.perf_counter(), time.process_time()
                run = mixgan.train(cfg)
                seconds[label], cpu[label] = time.perf_counter() - t0, time.process_time() - c0
                if label == "on":
                    stats = [json.loads(l) for l in Path(run.path / "stats.jsonl").read_text().splitlines()]
                    evals = [r for r in stats if "eval_s" in r]
                    inside = sum(r["eval_s"] for r in evals)
                    fids = [r["fid"] for r in evals]
            rows.append({"pair": pair, "off_s": seconds["off"], "on_s": seconds["on"],
                         "ratio": seconds["on"] / seconds["off"], "cpu_ratio": cpu["on"] / cpu["off"],
                         "evaluations": len(evals), "eval_s": inside,
                         "share": inside / seconds["on"], "first_fid": fids[0], "last_fid": fids[-1]})
    body = [f"{args.model} on {args.dataset}, {args.steps} steps, eval every {every} steps of {n} samples "
            f"({args.device}); runs without and with evaluation made back to back on a possibly shared machine "
            "(even pairs: without first).",
            "", "| pair | without eval (s) | with eval (s) | ratio | CPU time ratio | evaluations | time in eval (s) | "
            "eval share | first FID | last FID |", "|---|---|---|---|---|---|---|---|---|---|"]
    body += [f"| {r['pair']} | {r['off_s']:.1f} | {r['on_s']:.1f} | {r['ratio']:.3f} | {r['cpu_ratio']:.3f} | "
             f"{r['evaluations']} | {r['eval_s']:.2f} | {r['share']:.1%} | {r['first_fid']:.2f} | {r['last_fid']:.2f} |"
             for r in rows]
    median = lambda key: statistics.median(r[key] for r in rows)  # noqa: E731
    body += ["", f"Median over pairs: wall-clock ratio {median('ratio'):.3f}, CPU time ratio {median('cpu_ratio'):.3f}, "
             f"eval share {median('share'):.1%}."]
    text = "\n".join(body)
    print(text)
    path = log_result("eval_cost", text, command_line("benchmarks.eval_cost", argv))
    print(f"wrote {path}")
    return rows


if __name__ == "__main__":
    main()
