"""What the data boundary's checks cost: the fingerprint of a whole folder, the memory of a long
thin image, and packing a folder with shards written atomically.

- fingerprint: ``Dataset.fingerprint()`` of a folder of N images (a stat per file: path, size,
  modification time), the median of 3 runs after one warm-up (the directory in the page cache);
- thin image: the growth of a fresh process's peak memory while ``image_folder`` reads a folder
  holding a 200,000 x 1 PNG at 64 px, 3 channels;
- pack: ``mixgan data pack`` of the N-image folder at 32 px in shards of 1,000 (each written to a
  temporary file, fsynced and renamed, under the folder's lock), seconds and images/s.

Usage:

    OMP_NUM_THREADS=1 python -m benchmarks.data_boundary [--images 20000] [--smoke]

``--smoke``: 200 images.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._harness import ROOT, command_line, log_result


def write_folder(folder: Path, n: int) -> None:
    """n small PNGs (16 x 16 grey, each its own level) in two class folders."""
    import numpy as np
    from PIL import Image

    for c in ("a", "b"):
        (folder / c).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(np.full((16, 16), i % 256, np.uint8)).save(folder / ("a", "b")[i % 2] / f"{i:07d}.png")


def thin_image_peak_mb(work: Path) -> float:
    """Peak memory growth (MB) of a fresh process reading a folder with a 200,000 x 1 PNG at 64 px RGB."""
    from PIL import Image

    folder = work / "thin"
    folder.mkdir()
    Image.new("RGB", (200_000, 1), (10, 20, 30)).save(folder / "thin.png")
    Image.new("RGB", (64, 64)).save(folder / "a.png")
    code = ("import resource\nfrom mixgan.data.folder import image_folder\n"
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            f"image_folder({str(folder)!r}, resolution=64, channels=3)\n"
            "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return float(out.stdout.split()[-1])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000, help="images in the folder")
    parser.add_argument("--smoke", action="store_true", help="200 images")
    args = parser.parse_args(argv)
    n = 200 if args.smoke else args.images

    from mixgan.cli import main as cli
    from mixgan.data.folder import image_folder

    with tempfile.TemporaryDirectory(prefix="mixgan-bench-boundary-") as tmp:
        work = Path(tmp)
        write_folder(work / "imgs", n)
        data = image_folder(work / "imgs")
        data.fingerprint()  # warm-up
        times = []
        for _ in range(3):
            t = time.perf_counter()
            data.fingerprint()
            times.append(time.perf_counter() - t)
        fingerprint_s = statistics.median(times)
        thin_mb = thin_image_peak_mb(work)
        t = time.perf_counter()
        if cli(["data", "pack", str(work / "imgs"), str(work / "shards"), "--resolution", "32",
                "--shard-size", "1000", "--quiet"]) != 0:
            raise RuntimeError("mixgan data pack failed")
        pack_s = time.perf_counter() - t
    row = {"images": n, "fingerprint_s": fingerprint_s, "fingerprint_ms_per_1000": 1000 * fingerprint_s / n * 1000,
           "thin_image_peak_mb": thin_mb, "pack_s": pack_s, "pack_images_per_s": n / pack_s}
    body = "\n".join([
        "| images | fingerprint (s) | per 1,000 files (ms) | 200,000 x 1 PNG: peak memory growth (MB) "
        "| data pack (s) | images/s |", "|---|---|---|---|---|---|",
        f"| {n} | {fingerprint_s:.3f} | {row['fingerprint_ms_per_1000']:.1f} | {thin_mb:.1f} | {pack_s:.2f} "
        f"| {row['pack_images_per_s']:.0f} |"])
    log_result("data_boundary", body, command_line("benchmarks.data_boundary", argv))
    print(body)
    return row


if __name__ == "__main__":
    main()
