"""What every benchmark shares: where the data is, the results log, and a cache keyed by the code version.

Benchmarks run from the repository root as ``python -m benchmarks.NAME`` (or with mixgan installed).

- Data: ``--data-dir`` (:func:`add_data_dir`), else ``$MIXGAN_DATA_DIR``, else the dataset's usual
  location (:func:`data_dir`).
- Results: :func:`log_result` appends an entry to ``benchmarks/results/<name>.md`` (or
  ``$MIXGAN_RESULTS_DIR/<name>.md``) holding the command line, the git commit, the UTC date, the
  machine and its load average, then the benchmark's table.
- Cache: :func:`cache_dir` and :func:`cached` keep intermediate results (trained runs, scores) under
  ``$MIXGAN_BENCH_CACHE/<name>/<key>`` (default ``$MIXGAN_CACHE/benchmarks``), where the key hashes the mixgan package's sources, the
  benchmark's own source and the arguments that decide the result: a changed library retrains.
- IC-GAN's instance fidelity (:func:`instance_fidelity`), scored by more than one benchmark.
- A real colour image set (:func:`emoji_folder`): Twitter's drawn emoji from the npm registry, one
  class folder per emoji category, installed once into the cache.
"""
from __future__ import annotations

import argparse
import datetime
import functools
import hashlib
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
DATA_DIRS = {"fashion-mnist": "/usr/share/datasets/fashion-mnist"}



def previous_image_recipe() -> dict[str, Any]:
    """The plain-DCGAN image settings (recipe ``image-dcgan-ns``: DCGAN bodies, non-saturating loss,
    Adam 2e-4 with beta1 0.5, batch 64) several benchmarks compare models on."""
    from mixgan.config import Recipe

    return dict(Recipe.read("image-dcgan-ns").values)


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


EMOJI_PACKAGE = "emoji-datasource-twitter@16.0.0"  # 3,786 drawn emoji, 64 px RGBA PNGs, CC-BY 4.0


def emoji_folder(resolution: int = 64, root: Path | None = None) -> Path:
    """A folder of real colour images for the benchmarks: the emoji of ``EMOJI_PACKAGE`` (skin-tone
    variants included), one sub-folder per category ("Animals & Nature", "Flags", ... : 9 classes),
    PNGs with alpha (mixgan's folder reader puts them on white). Another ``resolution`` gives a
    folder of RGB PNGs of that size, fitted by mixgan's own reader (``read_images``), so a run
    and ``mixgan evaluate --samples`` read the set at one size without settings.

    Fetched once with ``npm pack`` into ``root`` (default ``<benchmark cache>/emoji-twitter``) and
    reused; exits with the command to run by hand where npm is missing or fails.
    """
    root = Path(root or Path(os.environ.get("MIXGAN_BENCH_CACHE") or _mixgan_cache() / "benchmarks") / "emoji-twitter")
    images = root / "images"
    if not (images / "done").is_file():
        _unpack_emoji(root, images)
    return images if resolution == 64 else _resized(images, root / f"images-{resolution}", resolution)


def _unpack_emoji(root: Path, images: Path) -> None:
    import tarfile

    from mixgan.io import atomic_write_text, file_lock

    root.mkdir(parents=True, exist_ok=True)
    with file_lock(root / ".lock"):
        if (images / "done").is_file():
            return
        tarballs = sorted(root.glob("emoji-datasource-twitter-*.tgz"))
        if not tarballs:
            try:
                subprocess.run(["npm", "pack", "--silent", EMOJI_PACKAGE], cwd=root, check=True, timeout=600,
                               capture_output=True)
            except (OSError, subprocess.SubprocessError) as e:
                sys.exit(f"could not fetch {EMOJI_PACKAGE} ({e}); install npm and run "
                         f"`cd {root} && npm pack {EMOJI_PACKAGE}`, then run this again")
            tarballs = sorted(root.glob("emoji-datasource-twitter-*.tgz"))
        with tarfile.open(tarballs[-1]) as tar:
            members = {m.name: m for m in tar.getmembers() if m.isfile()}
            table = json.load(tar.extractfile(members["package/emoji.json"]))
            for emoji in table:
                category = emoji["category"]
                if category == "Component":  # bare skin-tone swatches and hair pieces, not pictures
                    continue
                names = [emoji["image"]] + [v["image"] for v in emoji.get("skin_variations", {}).values()]
                folder = images / category.replace("&", "and").replace(" ", "-")
                folder.mkdir(parents=True, exist_ok=True)
                for name in names:
                    member = members.get(f"package/img/twitter/64/{name}")
                    if member is not None:
                        (folder / name).write_bytes(tar.extractfile(member).read())
        atomic_write_text(images / "done", EMOJI_PACKAGE + "\n")


def _resized(source: Path, target: Path, resolution: int) -> Path:
    """``source``'s class folders with every image fitted to ``resolution`` (RGB on white), made once."""
    if (target / "done").is_file():
        return target
    from PIL import Image

    from mixgan.data.folder import list_images, read_images
    from mixgan.io import atomic_write_text, file_lock

    with file_lock(target.parent / ".lock"):
        if (target / "done").is_file():
            return target
        paths = list_images(source).paths
        for images, index in read_images(paths, resolution, 3):
            for image, i in zip(images, index):
                out = target / paths[i].parent.name / paths[i].name
                out.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(image.transpose(1, 2, 0)).save(out)
        atomic_write_text(target / "done", f"{resolution}\n")
    return target


def _mixgan_cache() -> Path:
    from mixgan.io import cache_dir as mixgan_cache

    return mixgan_cache()


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

    root = Path(os.environ.get("MIXGAN_BENCH_CACHE") or mixgan_cache() / "benchmarks")
    path = root / name / cache_key(script, args)
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


# ---- IC-GAN ------------------------------------------------------------------------------------
def instance_fidelity(model, n: int = 1000, top: int = 10, seed: int = 0, images=None) -> float:
    """Share of samples whose embedding has their own conditioning instance among its ``top``
    most similar of ``n`` instances: ``n`` random stored (training) instances, or ``n`` of
    ``images`` the model never saw (transfer), embedded the same way (IC-GAN's own embedding)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    gen = torch.Generator(model.device).manual_seed(seed)
    if images is None:
        chosen = torch.randperm(model.instances, generator=g)[:n]
        s = model.sample(0, instances=chosen, per_instance=1, generator=gen)
        h = model.features[chosen.to(model.device)]
    else:
        h = model.embed_instances(images[torch.randperm(len(images), generator=g)[:n]])
        s = model.sample(0, conditions=h, per_instance=1, generator=gen)
    f = model.embed_instances(s.x)
    ranks = (f @ h.T).topk(top, dim=1).indices
    return float((ranks == torch.arange(len(h), device=ranks.device)[:, None]).any(1).float().mean())


# ---- the script baseline ------------------------------------------------------------------------
# A plain DCGAN as the widely copied single-file tutorial scripts write it (Radford et al. 2016): G upsamples
# a linear seed twice with conv + BatchNorm + ReLU to a tanh image; D is four stride-2 convs with LeakyReLU(0.2),
# dropout 0.25 and BatchNorm; BCE, Adam 2e-4 with beta1 0.5, batch 64. It lives here, not in the library.
def baseline_nets(channels: int, size: int, latent_dim: int = 100):
    from torch import nn

    s0 = size // 4

    class Generator(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(latent_dim, 128 * s0 * s0)
            self.body = nn.Sequential(
                nn.BatchNorm2d(128), nn.Upsample(scale_factor=2),
                nn.Conv2d(128, 128, 3, 1, 1), nn.BatchNorm2d(128), nn.ReLU(),
                nn.Upsample(scale_factor=2),
                nn.Conv2d(128, 64, 3, 1, 1), nn.BatchNorm2d(64), nn.ReLU(),
                nn.Conv2d(64, channels, 3, 1, 1), nn.Tanh())

        def forward(self, z):
            return self.body(self.fc(z).view(len(z), 128, s0, s0))

    def block(c_in, c_out, bn=True):
        layers = [nn.Conv2d(c_in, c_out, 3, 2, 1), nn.LeakyReLU(0.2), nn.Dropout2d(0.25)]
        return layers + ([nn.BatchNorm2d(c_out)] if bn else [])

    ds = math.ceil(size / 16)
    D = nn.Sequential(*block(channels, 16, bn=False), *block(16, 32), *block(32, 64), *block(64, 128),
                      nn.Flatten(), nn.Linear(128 * ds * ds, 1))
    return Generator(), D


def train_baseline(dataset: str, seconds: float, device: str, out: Path, seed: int = 0, max_steps: int = 0,
                   n_samples: int = 10_000, data_folder: str = "") -> None:
    """Train the script DCGAN for ``seconds`` (or ``max_steps`` steps, when > 0) and write
    ``n_samples`` samples (``out/samples.npz``) and its step count (``out/steps.json``)."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from mixgan.data import load_dataset

    torch.manual_seed(seed)
    data = load_dataset(dataset, data_folder or data_dir(dataset), seed=seed)
    x = data.images().to(device)
    G, D = baseline_nets(x.shape[1], x.shape[2])
    G, D = G.to(device), D.to(device)
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    batch, steps, order, pos = min(64, len(x)), 0, torch.randperm(len(x), device=device), 0  # the script's 64, or the whole set
    ones, zeros = torch.ones(batch, 1, device=device), torch.zeros(batch, 1, device=device)
    start = time.perf_counter()
    while (steps < max_steps) if max_steps else (time.perf_counter() - start < seconds):
        if pos + batch > len(x):
            order, pos = torch.randperm(len(x), device=device), 0
        real, pos = x[order[pos:pos + batch]], pos + batch
        fake = G(torch.randn(batch, 100, device=device))
        loss_d = (F.binary_cross_entropy_with_logits(D(real), ones)
                  + F.binary_cross_entropy_with_logits(D(fake.detach()), zeros)) / 2
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        loss_g = F.binary_cross_entropy_with_logits(D(fake), ones)
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        steps += 1
    trained = time.perf_counter() - start
    G.eval()
    with torch.no_grad():
        samples = torch.cat([G(torch.randn(min(1000, n_samples - i), 100, device=device)).cpu()
                             for i in range(0, n_samples, 1000)])
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "samples.npz", x=samples.numpy())
    (out / "steps.json").write_text(json.dumps({"steps": steps, "seconds": trained}))


def parse_variant(text: str) -> tuple[str, str, list[str]]:
    """``'LABEL=MODEL key=value ...'`` as (label, model, settings); a setting ending in ``.toml`` is
    a config file. A malformed one exits with one line."""
    label, _, rest = text.partition("=")
    if not label or "/" in label or not rest.strip():
        sys.exit(f"--variant '{text}': expected 'LABEL=MODEL key=value ...' with no '/' in LABEL")
    model, *settings = shlex.split(rest)
    return label, model, settings


def mean_sd(values: list[float], spec: str = ".3f", sd_spec: str | None = None, empty: str = "–") -> str:
    """A table cell for one or several seeds' values: the value, or "mean ± sd"; ``empty`` for none."""
    import statistics

    if not values:
        return empty
    if len(values) == 1:
        return format(values[0], spec)
    return f"{format(statistics.mean(values), spec)} ± {format(statistics.stdev(values), sd_spec or spec)}"

