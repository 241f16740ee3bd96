"""How fast `mixgan explore` answers a move of its controls, on a 64 px GM-GAN on the CPU.

A folder of 64 px colour images in two classes (drawn here, seeded) trains a GM-GAN for a few
steps with the recipe's networks (the weights do not change the time; the shapes do). Its
explorer is served on 127.0.0.1 and asked over HTTP as the page asks:

- one move at a time (scale 1.00 -> 0.50, then seed, then Gaussian): each grid's response time;
- ten quick moves (scale 1.00 -> 1.50, 30 ms apart, as a held arrow key): the time from the last
  move until its grid arrives, and how many overtaken requests were dropped unanswered (409);
- the score of a setting (``score_samples`` samples, computed when the page asks, after the grid):
  what every move cost before the grid, when the score was computed first.

Usage: ``OMP_NUM_THREADS=2 python -m benchmarks.explore_speed [--threads 2]``; ``--smoke``: digits,
a tiny model, three moves. Appends a table to ``benchmarks/results/explore_speed.md``.
"""
from __future__ import annotations

import argparse
import http.client
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

from . import _harness


def photo_folder(root: Path, size: int = 64, per_class: int = 150, seed: int = 0) -> Path:
    """Two classes of colour pictures: soft discs and stripes, with seeded colours and positions."""
    import numpy as np
    from PIL import Image

    g = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    for name in ("discs", "stripes"):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            colour = g.uniform(0.2, 1.0, 3)
            if name == "discs":
                cx, cy, r = g.uniform(0.3, 0.7, 2).tolist() + [g.uniform(0.15, 0.35)]
                mask = ((xx - cx) ** 2 + (yy - cy) ** 2 < r * r).astype(float)
            else:
                mask = (np.sin((xx * np.cos(g.uniform(0, 3)) + yy) * g.uniform(10, 25)) > 0).astype(float)
            img = mask[..., None] * colour + (1 - mask[..., None]) * (1 - colour) * 0.5
            img = np.clip(img + g.normal(0, 0.03, img.shape), 0, 1)
            Image.fromarray((img * 255).astype(np.uint8)).save(root / name / f"{i:03d}.png")
    return root


def request(port: int, path: str) -> tuple[int, float]:
    """(HTTP status, seconds) of one GET."""
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    conn.request("GET", path)
    r = conn.getresponse()
    r.read()
    conn.close()
    return r.status, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=2, help="training steps of the model timed")
    parser.add_argument("--smoke", action="store_true", help="seconds: digits, a tiny model, three moves")
    args = parser.parse_args(argv)
    command = _harness.command_line("benchmarks.explore_speed", argv)
    import torch

    torch.set_num_threads(args.threads)
    import mixgan
    from mixgan.explore import open_server

    tmp = Path(tempfile.mkdtemp(prefix="explore-speed-"))
    settings = {"model.name": "gmgan", "encoder.enabled": False, "train.steps": args.steps, "train.device": "cpu",
                "train.checkpoint_every": args.steps, "train.sample_every": args.steps, "train.eval_every": 0,
                "out": str(tmp / "run")}
    if args.smoke:
        settings.update({"data.dataset": "digits", "model.width": 8, "prior.components": 4})
        moves = 3
    else:
        settings.update({"data.dataset": "folder", "data.data_dir": str(photo_folder(tmp / "photos")),
                         "data.resolution": 64, "data.channels": 3})
        moves = 10
    cfg = mixgan.build_config(settings)
    run = mixgan.train(cfg)
    server = open_server(run.path, port=0, run=run)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        t0 = time.perf_counter()
        request(port, "/score.json?choice=0&scale=1.00&seed=99")  # loads (or trains) the reference classifier
        warm_s = time.perf_counter() - t0

        one_by_one = []
        for i in range(1, moves + 1):
            one_by_one.append(("scale", request(port, f"/grid.png?choice=all&scale={1 - 0.05 * i:.2f}&seed=0")))
        for i in range(1, moves // 2 + 1):
            one_by_one.append(("seed", request(port, f"/grid.png?choice=all&scale=1.00&seed={i}")))
        for k in range(min(moves // 2, run.model.components)):
            one_by_one.append(("Gaussian", request(port, f"/grid.png?choice={k}&scale=1.00&seed=0")))
        assert all(status == 200 for _, (status, _) in one_by_one), one_by_one

        quick, threads = {}, []
        for i in range(1, moves + 1):
            def fetch(i=i):
                quick[i] = request(port, f"/grid.png?choice=all&scale={1 + 0.05 * i:.2f}&seed=0")
            threads.append(threading.Thread(target=fetch))
            threads[-1].start()
            time.sleep(0.03)
        for t in threads:
            t.join()
        settle_s = quick[moves][1]  # from the last move's request to its grid
        dropped = sum(status == 409 for status, _ in quick.values())
        assert quick[moves][0] == 200, quick

        status, score_s = request(port, f"/score.json?choice=all&scale={1 + 0.05 * moves:.2f}&seed=0")
        assert status == 200
        _, cached_score_s = request(port, f"/score.json?choice=all&scale={1 + 0.05 * moves:.2f}&seed=0")
    finally:
        server.shutdown()
        server.server_close()
        shutil.rmtree(tmp, ignore_errors=True)

    times = [s for _, (_, s) in one_by_one]
    result = {"resolution": run.model.shape[-1], "arch": run.cfg.model.arch, "width": run.cfg.model.width,
              "grid_ms_median": round(1000 * statistics.median(times), 1), "grid_ms_max": round(1000 * max(times), 1),
              "settle_ms": round(1000 * settle_s, 1), "dropped": dropped, "moves": moves,
              "score_s": round(score_s, 2), "score_cached_ms": round(1000 * cached_score_s, 1),
              "warm_s": round(warm_s, 1), "threads": args.threads}
    per_move = "\n".join(f"| {i + 1} | {what} | {1000 * s:.1f} |" for i, (what, (_, s)) in enumerate(one_by_one))
    text = (f"`mixgan explore` on a {result['resolution']} px GM-GAN ({result['arch']}, width {result['width']}, "
            f"{cfg.data.dataset}), {args.threads} threads, grid {server.explorer.rows} x {server.explorer.columns}, "
            f"score over {server.explorer.score_samples} samples.\n\n"
            "| measure | value |\n|---|---|\n"
            f"| grid response, one move at a time: median | {result['grid_ms_median']} ms |\n"
            f"| grid response, one move at a time: slowest | {result['grid_ms_max']} ms |\n"
            f"| {moves} quick moves (30 ms apart): last move to its grid | {result['settle_ms']} ms |\n"
            f"| {moves} quick moves: overtaken requests dropped (409) | {dropped} of {moves - 1} |\n"
            f"| score of one setting (asked after its grid; before, every move paid it first) | {result['score_s']} s |\n"
            f"| the same score again (cached) | {result['score_cached_ms']} ms |\n"
            f"| first score (loads the reference classifier, or trains it once per data) | {result['warm_s']} s |\n\n"
            "Each move one at a time:\n\n| move | control | grid response (ms) |\n|---|---|---|\n" + per_move)
    print(text)
    _harness.log_result("explore_speed", text, command)
    return result


if __name__ == "__main__":
    main()
