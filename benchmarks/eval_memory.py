"""Peak memory of ``mixgan evaluate`` and ``mixgan tradeoff`` on a 64 px colour run.

A folder of 64 px RGB images (Fashion-MNIST items, upscaled and tinted, without class folders) is
written, the default GM-GAN for it trains a few steps (the weights do not matter here, their size
does), and the label-free feature network is trained once in a warm-up process. Then each command
runs in a fresh process that reports its resident memory after loading the run (the model, torch,
the data) and its peak (``ru_maxrss``); the difference is what the evaluation itself costs. Usage:

    OMP_NUM_THREADS=2 python -m benchmarks.eval_memory [--images 1000] [--n 10000] [--tradeoff-n 500] [--smoke]

``--smoke``: 60 images of 16 px, width 8, 100 samples, two scales of 50.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._harness import add_data_dir, command_line, data_dir, log_result

PROBE = r"""
import json, resource, sys, time
from mixgan.api import load
from mixgan.cli import main
run = sys.argv[1]
load(run, device="cpu")  # torch, the model and its data in memory: the base line
def status_mb(key):
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith(key)) / 1024
base = status_mb("VmRSS")
try:  # reset the peak to the current size: the peak is then the command's, not the loading's
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    reset = True
except OSError:
    reset = False
t = time.perf_counter()
code = main(sys.argv[2:])
seconds = time.perf_counter() - t
peak = status_mb("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"code": code, "base_mb": base, "peak_mb": peak, "seconds": seconds, "reset": reset}))
"""


def write_folder(folder: Path, fashion_dir: str, count: int, size: int = 64, labelled: bool = False) -> None:
    """``count`` Fashion-MNIST training items as ``size`` px RGB PNGs (a tint per item): directly in
    ``folder``, or in one sub-folder per class with ``labelled``."""
    import numpy as np
    from PIL import Image

    from mixgan.data import load_dataset

    data = load_dataset("fashion-mnist", fashion_dir)
    x = data.x_train[:count].numpy()  # uint8 N x 1 x 28 x 28
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    y = data.y_train[:count].tolist()
    for c in set(y) if labelled else ():
        (folder / f"class{c}").mkdir()
    for i, a in enumerate(x):
        tint = rng.uniform(0.5, 1.0, 3)
        rgb = (a[0][..., None].astype(np.float64) * tint).round().astype(np.uint8)
        Image.fromarray(rgb, "RGB").resize((size, size), Image.Resampling.BICUBIC).save(
            folder / (f"class{y[i]}" if labelled else "") / f"{i:05d}.png")


def probe(run: Path, argv: list[str]) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, str(run), *argv], capture_output=True, text=True, check=False)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or not lines:
        raise SystemExit(f"eval_memory: {' '.join(argv[:2])} failed:\n{out.stderr[-2000:]}")
    result = json.loads(lines[-1])
    if result["code"] != 0:
        raise SystemExit(f"eval_memory: {' '.join(argv[:2])} exited {result['code']}:\n{out.stderr[-2000:]}")
    return result


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000, help="images in the 64 px folder")
    parser.add_argument("--n", type=int, default=10_000, help="samples mixgan evaluate draws")
    parser.add_argument("--tradeoff-n", type=int, default=500, help="samples per scale of mixgan tradeoff")
    parser.add_argument("--scales", default="0.25,0.5,0.75,1,1.5,2")
    parser.add_argument("--size", type=int, default=64, help="image side in px")
    parser.add_argument("--labelled", action="store_true",
                        help="class sub-folders: the reference classifier, IS and the quality/diversity scores")
    parser.add_argument("--smoke", action="store_true", help="seconds: 60 images of 16 px, width 8, 100 samples")
    add_data_dir(parser)
    args = parser.parse_args(argv)
    width = {}
    if args.smoke:
        args.images, args.size, args.n, args.tradeoff_n, args.scales = 60, 16, 100, 50, "0.5,1"
        width = {"model.width": 8}
    import mixgan

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        write_folder(folder, data_dir("fashion-mnist", args.data_dir), args.images, args.size, args.labelled)
        cfg = mixgan.build_config({"data.dataset": "folder", "data.data_dir": str(folder), "model.name": "gmgan",
                                   "train.steps": 2, "train.device": "cpu", "train.eval_every": 0,
                                   "out": f"{tmp}/run", **width})
        run = mixgan.train(cfg).path
        params = sum(p.numel() for p in mixgan.load(run, device="cpu").model.G.parameters())
        warm = time.perf_counter()
        probe(run, ["evaluate", str(run), "--n", "20", "--n-real", "20", "--quiet", "--device", "cpu"])
        warm = time.perf_counter() - warm
        commands = [("evaluate", ["evaluate", str(run), "--n", str(args.n), "--quiet", "--device", "cpu"]),
                    ("tradeoff", ["tradeoff", str(run), "--n", str(args.tradeoff_n), "--scales", args.scales,
                                  "--quiet", "--device", "cpu"])]
        for name, cmd in commands:
            r = probe(run, cmd)
            rows.append({"command": name, "args": " ".join(cmd[2:-3]), **r, "above_mb": r["peak_mb"] - r["base_mb"]})
    reset = all(r["reset"] for r in rows)
    kind = ("in 10 class folders: the reference classifier" if args.labelled
            else "no labels: the label-free feature network")
    body = [f"{args.size} px RGB folder of {args.images} images ({kind}, trained "
            f"or read from the cache in a {warm:.0f} s warm-up), default gmgan ({params:,} generator parameters, "
            "2 steps), CPU. Each command in a fresh process: resident memory after loading the run, and the peak "
            + ("while the command ran (the peak counter reset after loading)." if reset else
               "of the whole process (ru_maxrss: loading included)."), "",
            "| command | arguments | after loading the run (MB) | peak (MB) | peak above the loaded run (MB) | time (s) |",
            "|---|---|---|---|---|---|"]
    body += [f"| {r['command']} | {r['args']} | {r['base_mb']:.0f} | {r['peak_mb']:.0f} | {r['above_mb']:.0f} | "
             f"{r['seconds']:.1f} |" for r in rows]
    text = "\n".join(body)
    print(text)
    path = log_result("eval_memory", text, command_line("benchmarks.eval_memory", argv))
    print(f"wrote {path}")
    return rows


if __name__ == "__main__":
    main()
