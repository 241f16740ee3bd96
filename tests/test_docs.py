"""The documentation runs: every fenced shell and Python block of README.md and docs/*.md.

Each document's blocks run in order in one temporary folder that holds the small inputs the
guide names (``photos/``, ``my-photos/``, ``a.jpg``, ``pairs.npz``, ...), so a block may use what
an earlier block of the same document trained. ``MIXGAN_MAX_STEPS`` and ``MIXGAN_MAX_SAMPLES``
(honoured by the CLI, docs/recipes.md) keep every training and evaluation to seconds. A block
that cannot run here (a GPU, several machines, a server that waits for Ctrl-C, hours of
benchmark) is preceded by ``<!-- not run: REASON -->``; a block is never skipped silently.
"""
from __future__ import annotations

import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import FASHION, idx_bytes

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUNNABLE = {"bash", "sh", "shell", "python"}
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)
NOT_RUN = re.compile(r"<!--\s*not run:\s*(.*?)\s*-->\s*$")


def blocks(path: Path) -> list[tuple[int, str, str, str | None]]:
    """(line, language, code, reason not run or None) for every runnable fenced block."""
    text = path.read_text()
    found = []
    for m in FENCE.finditer(text):
        lang = m.group(1)
        if lang not in RUNNABLE:
            continue
        line = text.count("\n", 0, m.start()) + 1
        before = text[:m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        reason = NOT_RUN.search(before)
        found.append((line, lang, m.group(2), reason.group(1) if reason else None))
    return found


def _image(path: Path, size: tuple[int, int], seed: int, mode: str = "RGB") -> None:
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    img = Image.new(mode, size, tuple(int(v) for v in rng.integers(0, 256, 3)))
    draw = ImageDraw.Draw(img)
    for _ in range(3):
        x0, y0 = rng.integers(0, size[0] // 2), rng.integers(0, size[1] // 2)
        draw.ellipse([x0, y0, x0 + size[0] // 2, y0 + size[1] // 2], fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    img.save(path)


def make_inputs(folder: Path) -> None:
    """The inputs the guide's examples name, small enough for seconds of work."""
    for c, name in enumerate(["cats", "dogs"]):
        (folder / "photos" / name).mkdir(parents=True)
        for i in range(40):  # 64 training images: enough for IC-GAN's k = 50 of docs/icgan.md
            ext = ".png" if i % 2 else ".jpg"
            _image(folder / "photos" / name / f"{i:03d}{ext}", (40 + 4 * (i % 3), 36), seed=100 * c + i)
    (folder / "my-photos").mkdir()
    for i in range(3):
        _image(folder / "my-photos" / f"p{i}.png", (48, 40), seed=900 + i)
    _image(folder / "a.jpg", (30, 30), seed=7)
    _image(folder / "b.png", (64, 50), seed=8)
    rng = np.random.default_rng(0)
    c = rng.normal(size=(512, 3)).astype(np.float32)
    x = c[:, :2] + 0.1 * rng.normal(size=(512, 2)).astype(np.float32)
    np.savez(folder / "pairs.npz", x=x, c=c)
    np.savez(folder / "conditions.npz", c=c[:4])
    np.savez(folder / "any.npz", x=rng.uniform(-1, 1, size=(64, 1, 28, 28)).astype(np.float32))
    np.savez(folder / "other.npz", x=rng.uniform(-1, 1, size=(64, 1, 8, 8)).astype(np.float32))
    cifar = folder / "data" / "cifar10"  # CIFAR-10's python batches, a few images each
    cifar.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, size=(8, 3072), dtype=np.uint8), b"labels": list(range(8))}
        (cifar / name).write_bytes(pickle.dumps(batch))
    mnist = folder / "mnist"
    mnist.mkdir()
    for split, n in (("train", 256), ("t10k", 64)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        (mnist / f"{split}-images-idx3-ubyte").write_bytes(idx_bytes(images))
        (mnist / f"{split}-labels-idx1-ubyte").write_bytes(idx_bytes(labels))


def environment(folder: Path) -> dict:
    """``mixgan`` and ``python`` on PATH as this interpreter, the repository importable, caps set."""
    bin_dir = folder / ".bin"
    bin_dir.mkdir()
    for name, target in (("mixgan", f'"{sys.executable}" -m mixgan'), ("python", f'"{sys.executable}"')):
        script = bin_dir / name
        script.write_text(f'#!/bin/sh\nexec {target} "$@"\n')
        script.chmod(0o755)
    env = dict(os.environ)
    env.update(PATH=f"{bin_dir}{os.pathsep}{env['PATH']}", PYTHONPATH=str(ROOT), HOME=str(folder),
               MIXGAN_MAX_STEPS="3", MIXGAN_MAX_SAMPLES="200", OMP_NUM_THREADS="1",
               MIXGAN_RESULTS_DIR=str(folder / "results"),
               MIXGAN_CACHE=os.path.abspath(os.environ["MIXGAN_CACHE"]))
    return env


def test_every_runnable_block_runs_or_says_why_not():
    """A ``not run`` marker names its reason; every document with shell or Python has some that run."""
    for path in DOCS:
        for line, _, _, reason in blocks(path):
            assert reason != "", f"{path.name}:{line}: a 'not run' marker without a reason"


@pytest.mark.slow
@pytest.mark.parametrize("path", [p for p in DOCS if any(r is None for *_, r in blocks(p))], ids=lambda p: p.name)
def test_documented_commands_run(path, tmp_path):
    if not os.path.isdir(FASHION) and "fashion-mnist" in path.read_text():
        pytest.skip(f"{FASHION} missing: apt-get install dataset-fashion-mnist")
    make_inputs(tmp_path)
    env = environment(tmp_path)
    for line, lang, code, reason in blocks(path):
        if reason is not None:
            continue
        argv = [sys.executable, "-c", code] if lang == "python" else ["bash", "-euo", "pipefail", "-c", code]
        done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, (f"{path.relative_to(ROOT)}:{line} failed (exit {done.returncode}):\n"
                                      f"{code}\n--- stderr ---\n{done.stderr[-3000:]}")
