"""Time FID + precision/recall/density/coverage for 10,000 fashion-mnist samples against 10,000
real ones, with the reference classifier and the real features already cached.

The "generated" samples are 10,000 fashion-mnist test images (their features are computed inside
the timed part, as `mixgan evaluate` must for new samples). Usage:

    OMP_NUM_THREADS=2 python benchmarks/eval_speed.py --threads 2 [--n 10000] [--k 5]

Prints one JSON line: seconds per stage and in total, and the metric values. With ``--sanity``
it then prints the full evaluation (FID, IS, PRDC, quality/diversity) of the test images and of the
same images with heavy Gaussian noise (std ``--noise``), both against the training split.
"""
from __future__ import annotations

import argparse
import json
import os
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--data-dir", default="")
    parser.add_argument("--sanity", action="store_true", help="also evaluate clean and noisy test images")
    parser.add_argument("--noise", type=float, default=1.0)
    parser.add_argument("--synthetic", type=int, default=0, metavar="N",
                        help="instead: PRDC of N x N random 128-d features, reporting peak memory (RSS)")
    args = parser.parse_args()
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
        print(json.dumps({"threads": args.threads, "n_real": args.synthetic, "n_fake": args.synthetic,
                          "prdc_s": round(time.perf_counter() - t0, 2), "peak_rss_gib_before": round(before, 3),
                          "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
                          "nxn_matrix_gib": round(args.synthetic ** 2 * 4 / 2**30, 2),
                          **{key: round(v, 4) for key, v in scores.items()}}))
        return
    data = load_dataset("fashion-mnist", args.data_dir)
    cls = get_classifier(data)  # trains once, then cached
    rows = real_subset(len(data.x_train), args.n, seed=0)  # the rows `mixgan evaluate --n-real N` uses
    reference_features(cls, data, "train", indices=rows)  # fill the cache outside the timed part

    t0 = time.perf_counter()
    real_f, _ = reference_features(cls, data, "train", indices=rows)
    t1 = time.perf_counter()
    fake_f, _ = cls.embed(data.x_test[:args.n])
    t2 = time.perf_counter()
    fid_value = fid(fake_f, real_f)
    t3 = time.perf_counter()
    scores = prdc(real_f, fake_f, k=args.k)
    t4 = time.perf_counter()
    print(json.dumps({"threads": args.threads, "cpu_count": os.cpu_count(), "n_fake": len(fake_f),
                      "n_real": len(real_f), "k": args.k, "load_cached_real_s": round(t1 - t0, 2),
                      "fake_features_s": round(t2 - t1, 2), "fid_s": round(t3 - t2, 2), "prdc_s": round(t4 - t3, 2),
                      "total_s": round(t4 - t0, 2), "fid": round(fid_value, 4),
                      **{key: round(v, 4) for key, v in scores.items()}}))
    if args.sanity:
        from mixgan.metrics import evaluate_samples

        x = data.x_test[:args.n]
        noisy = (x + args.noise * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(-1, 1)
        keys = ["fid", "is", "precision", "recall", "density", "coverage", "quality", "diversity"]
        for name, images in (("test split", x), (f"test split + N(0, {args.noise}^2) noise", noisy)):
            r = evaluate_samples(images, data, metrics="fid,is,prdc,qd", n_real=args.n, k=args.k)
            print(json.dumps({"samples": name, "n_fake": r["n_fake"], "n_real": r["n_real"],
                              **{key: round(r[key], 4) for key in keys}}))


if __name__ == "__main__":
    main()
