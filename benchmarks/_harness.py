"""What every benchmark shares: where the data is, the results log, and a cache keyed by the code version.

Benchmarks run from the repository root as ``python -m benchmarks.NAME`` (or with mixgan installed).

- Data: ``--data-dir`` (:func:`add_data_dir`), else ``$MIXGAN_DATA_DIR``, else the dataset's usual
  location (:func:`data_dir`).
- Results: :func:`log_result` appends an entry to ``benchmarks/results/<name>.md`` (or
  ``$MIXGAN_RESULTS_DIR/<name>.md``) holding the command line, the git commit, the UTC date, the
  machine and its load average, then the benchmark's table.
- Cache: :func:`cache_dir` and :func:`cached` keep intermediate results (trained runs, scores) under
  ``$MIXGAN_CACHE/benchmarks/<name>/<key>``, where the key hashes the mixgan package's sources, the
  benchmark's own source and the arguments that decide the result: a changed library retrains.
"""
from __future__ import annotations

import argparse
import datetime
import functools
import hashlib
import json
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
DATA_DIRS = {"fashion-mnist": "/usr/share/datasets/fashion-mnist"}

# The image settings the library used before its current image recipe (DCGAN bodies, non-saturating
# loss, Adam 2e-4 with beta1 0.5, batch 64): several benchmarks compare models on it.
PREVIOUS_IMAGE_RECIPE: dict[str, Any] = {
    "model.arch": "dcgan", "model.width": 64, "model.loss": "ns", "model.spectral_norm": False,
    "train.lr_g": 2e-4, "train.lr_d": 2e-4, "train.batch_size": 64, "model.condition": "concat",
    "model.mismatch": 0.0, "train.beta1": 0.5, "train.beta2": 0.999, "model.encoder": False, "prior.means": "uniform",
}


# ---- data ---------------------------------------------------------------------------------------
def add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", default="",
                        help="folder of the dataset's files (default: $MIXGAN_DATA_DIR, else the dataset's usual place)")


def data_dir(dataset: str, given: str = "") -> str:
    """The folder of ``dataset``'s files: ``given``, else ``$MIXGAN_DATA_DIR``, else its usual place
    ('' for datasets that need none: generated, bundled, ``npz:``)."""
    if dataset not in DATA_DIRS and not given:
        return ""
    return given or os.environ.get("MIXGAN_DATA_DIR") or DATA_DIRS.get(dataset, "")


# ---- results log --------------------------------------------------------------------------------
def results_dir() -> Path:
    return Path(os.environ.get("MIXGAN_RESULTS_DIR") or RESULTS)


def command_line(module: str, argv: list[str] | None = None) -> str:
    """``python -m benchmarks.NAME ARGS``, with the thread count when one is set."""
    argv = sys.argv[1:] if argv is None else argv
    threads = os.environ.get("OMP_NUM_THREADS")
    prefix = f"OMP_NUM_THREADS={threads} " if threads else ""
    return f"{prefix}python -m {module} {shlex.join(argv)}".rstrip()


def git_commit() -> str:
    """The short commit hash, with ``+dirty`` when tracked files differ from it; 'unknown' outside git."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30,
                              check=True).stdout.strip()
    try:
        commit = git("rev-parse", "--short", "HEAD")
        return commit + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine() -> str:
    """CPU model, cores, memory, GPU (if any) and torch version, in one line."""
    cpu = platform.processor() or platform.machine()
    ram = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal"))
        ram = f", {kib / 2 ** 20:.0f} GiB RAM"
    except (OSError, StopIteration, ValueError):
        pass
    gpu = "no GPU"
    torch_version = ""
    try:
        import torch

        torch_version = f", torch {torch.__version__}"
        if torch.cuda.is_available():
            gpu = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    except ImportError:
        pass
    return f"{cpu}, {os.cpu_count()} cores{ram}, {gpu}{torch_version}"


def load_average() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg()) + " (1 / 5 / 15 min)"


def log_result(name: str, body: str, command: str, title: str = "") -> Path:
    """Append an entry for ``body`` (Markdown: a table, a few lines) to ``<results>/<name>.md``:
    the command, commit, UTC date, machine and load average, then the body. Returns the file."""
    path = results_dir() / f"{name}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    head = "" if path.exists() else f"# {name}\n\nResults of `benchmarks/{name}`, newest last.\n"
    entry = "\n".join([
        f"\n## {title or date}\n",
        f"- command: `{command}`",
        f"- commit: {git_commit()}",
        f"- date: {date}",
        f"- machine: {machine()}",
        f"- load average: {load_average()}",
        "", body.strip(), ""])
    with open(path, "a") as fh:
        fh.write(head + entry)
    return path


# ---- cache keyed by the code version ----------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _source_hash(*files: str) -> str:
    h = hashlib.sha256()
    package = ROOT / "mixgan"
    paths = sorted(p for p in package.rglob("*") if p.suffix in (".py", ".toml") and "__pycache__" not in p.parts)
    for p in paths + [Path(f) for f in files]:
        h.update(str(p.relative_to(ROOT) if p.is_relative_to(ROOT) else p).encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def code_version(script: str | None = None) -> str:
    """A hash of the mixgan package's sources (and of ``script``, a benchmark's file, when given)."""
    return _source_hash(*([str(Path(script).resolve())] if script else []))[:16]


def cache_key(script: str, args: Any) -> str:
    """The key of a result of ``script`` computed from ``args`` (anything JSON can write) with today's code."""
    text = json.dumps([code_version(script), args], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cache_dir(name: str, script: str, args: Any) -> Path:
    """A folder for what ``script`` computes from ``args`` with today's code (created)."""
    from mixgan.io import cache_dir as mixgan_cache

    path = mixgan_cache() / "benchmarks" / name / cache_key(script, args)
    path.mkdir(parents=True, exist_ok=True)
    return path


def cached(name: str, script: str, args: Any, compute: Callable[[Path], dict]) -> dict:
    """``compute(folder)``'s JSON result for ``args``, computed once per code version; ``folder`` is
    the entry's cache folder, where ``compute`` may keep what it trains."""
    from mixgan.io import atomic_write_text

    folder = cache_dir(name, script, args)
    done = folder / "result.json"
    if done.is_file():
        return json.loads(done.read_text())
    result = compute(folder)
    atomic_write_text(done, json.dumps(result, indent=1) + "\n")
    return result
