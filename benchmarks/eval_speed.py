"""Time FID + precision/recall/density/coverage for 10,000 fashion-mnist samples against 10,000
real ones, with the reference classifier and the real features already cached.

The "generated" samples are 10,000 fashion-mnist test images (their features are computed inside
the timed part, as `mixgan evaluate` must for new samples). Usage:

    OMP_NUM_THREADS=2 python -m benchmarks.eval_speed --threads 2 [--n 10000] [--k 5] [--dataset D]

Appends a table of seconds per stage and in total, and the metric values, to
``benchmarks/results/eval_speed.md``. With ``--sanity`` it adds the full evaluation (FID, IS, PRDC,
quality/diversity) of the test images and of the same images with heavy Gaussian noise (std
``--noise``), both against the training split. ``--synthetic N`` instead times PRDC on N x N random
128-d features and reports the peak memory. ``--smoke``: digits, 200 samples, with ``--sanity``.
"""
from __future__ import annotations

import argparse
import os
import time

from . import _harness

STAGES = [("load_cached_real_s", "load cached real features"), ("fake_features_s", "features of the samples"),
          ("fid_s", "FID"), ("prdc_s", "precision/recall/density/coverage"), ("total_s", "total")]
SCORES = ["fid", "is", "precision", "recall", "density", "coverage", "quality", "diversity"]


def table(head: list[str], rows: list[list]) -> str:
    cells = [[f"{c:.4g}" if isinstance(c, float) else str(c) for c in row] for row in rows]
    return "\n".join(["| " + " | ".join(head) + " |", "|---" * len(head) + "|"] + ["| " + " | ".join(r) + " |" for r in cells])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--dataset", default="fashion-mnist")
    _harness.add_data_dir(parser)
    parser.add_argument("--sanity", action="store_true", help="also evaluate clean and noisy test images")
    parser.add_argument("--noise", type=float, default=1.0)
    parser.add_argument("--synthetic", type=int, default=0, metavar="N",
                        help="instead: PRDC of N x N random 128-d features, reporting peak memory (RSS)")
    parser.add_argument("--smoke", action="store_true", help="seconds: digits, 200 samples, with --sanity")
    args = parser.parse_args(argv)
    if args.smoke:
        args.dataset, args.n, args.sanity = "digits", 200, True
    command = _harness.command_line("benchmarks.eval_speed", argv)
    import torch

    torch.set_num_threads(args.threads)
    from mixgan.data import load_dataset
    from mixgan.metrics import fid, get_classifier, prdc, reference_features
    from mixgan.metrics.suite import real_subset

    if args.synthetic:
        import resource

        gen = torch.Generator().manual_seed(0)
        real, fake = torch.randn(args.synthetic, 128, generator=gen), torch.randn(args.synthetic, 128, generator=gen)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        t0 = time.perf_counter()
        scores = prdc(real, fake, k=args.k)
        result = {"threads": args.threads, "n_real": args.synthetic, "n_fake": args.synthetic,
                  "prdc_s": round(time.perf_counter() - t0, 2), "peak_rss_gib_before": round(before, 3),
                  "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
                  "nxn_matrix_gib": round(args.synthetic ** 2 * 4 / 2**30, 2)}
        text = (f"PRDC of {args.synthetic:,} x {args.synthetic:,} random 128-d features, k={args.k}, "
                f"{args.threads} threads\n\n" + table(["PRDC s", "peak RSS before (GiB)", "peak RSS (GiB)", "N x N float32 (GiB)"],
                                                      [[result["prdc_s"], result["peak_rss_gib_before"],
                                                        result["peak_rss_gib"], result["nxn_matrix_gib"]]]))
        print(text)
        _harness.log_result("eval_speed", text, command)
        return result
    data = load_dataset(args.dataset, _harness.data_dir(args.dataset, args.data_dir))
    cls = get_classifier(data)  # trains once, then cached
    rows = real_subset(len(data.x_train), args.n, seed=0)  # the rows `mixgan evaluate --n-real N` uses
    reference_features(cls, data, "train", indices=rows)  # fill the cache outside the timed part

    t0 = time.perf_counter()
    real_f, _ = reference_features(cls, data, "train", indices=rows)
    t1 = time.perf_counter()
    fake_f, _ = cls.embed(data.images("test")[:args.n])
    t2 = time.perf_counter()
    fid_value = fid(fake_f, real_f)
    t3 = time.perf_counter()
    scores = prdc(real_f, fake_f, k=args.k)
    t4 = time.perf_counter()
    result = {"threads": args.threads, "cpu_count": os.cpu_count(), "n_fake": len(fake_f),
              "n_real": len(real_f), "k": args.k, "load_cached_real_s": round(t1 - t0, 2),
              "fake_features_s": round(t2 - t1, 2), "fid_s": round(t3 - t2, 2), "prdc_s": round(t4 - t3, 2),
              "total_s": round(t4 - t0, 2), "fid": round(fid_value, 4), "classifier_accuracy": cls.accuracy,
              **{key: round(v, 4) for key, v in scores.items()}}
    lines = [f"{args.dataset}: {len(fake_f):,} test images as samples against {len(real_f):,} training images, "
             f"reference-classifier features (test accuracy {cls.accuracy:.4f}), k={args.k}, {args.threads} threads; "
             "seconds per stage", "",
             table([h for _, h in STAGES], [[result[k] for k, _ in STAGES]]), "",
             table(["FID", "precision", "recall", "density", "coverage"],
                   [[result[k] for k in ("fid", "precision", "recall", "density", "coverage")]])]
    if args.sanity:
        from mixgan.metrics import evaluate_samples

        x = data.images("test")[:args.n]
        noisy = (x + args.noise * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(-1, 1)
        result["sanity"] = {}
        for name, images in (("test split", x), (f"test split + N(0, {args.noise:g}^2) noise", noisy)):
            r = evaluate_samples(images, data, metrics="fid,is,prdc,qd", n_real=args.n, k=args.k)
            result["sanity"][name] = {key: r[key] for key in SCORES}
        lines += ["", f"Full evaluation against {args.n:,} training images:", "",
                  table(["samples"] + SCORES, [[name] + [r[k] for k in SCORES] for name, r in result["sanity"].items()])]
    text = "\n".join(lines)
    print(text)
    _harness.log_result("eval_speed", text, command)
    return result


if __name__ == "__main__":
    main()
