"""Small pieces the sub-commands share: output files, the progress bar, tables."""
from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np

from ..errors import MixganError
from ..io import atomic_write_bytes


def write_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> Path:
    path = Path(path)
    if path.suffix != ".npz":
        raise MixganError(f"--out {path}: expected a .npz file name")
    if not path.parent.exists():
        raise MixganError(f"--out {path}: folder {path.parent} does not exist")
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    try:
        atomic_write_bytes(path, buf.getvalue())
    except OSError as exc:
        raise MixganError(f"cannot write {path} ({exc.strerror})") from None
    return path


def check_out_path(path: str | Path, what: str = "output folder") -> Path:
    """Refuse, before anything is computed, an output path that cannot be made: a name longer than
    the file system allows, a file where a folder must be, a folder that cannot be written."""
    import os

    path = Path(path)
    shown = str(path) if len(str(path)) <= 80 else str(path)[:60] + "..."
    existing = next((p for p in (path, *path.parents) if os.path.lexists(p)), Path("."))
    folder = existing if existing.is_dir() else existing.parent
    limit = os.pathconf(folder, "PC_NAME_MAX")
    long = next((part for part in path.parts if len(os.fsencode(part)) > limit), None)
    why = (f"a name of {len(os.fsencode(long))} bytes; the file system allows {limit}" if long is not None
           else "the path is longer than the file system allows"
           if len(os.fsencode(str(path.absolute()))) >= os.pathconf(folder, "PC_PATH_MAX")
           else f"{existing} is a file, not a folder" if existing != path and not existing.is_dir()
           else f"no permission to write in {existing}" if existing != path and not os.access(existing, os.W_OK | os.X_OK)
           else "")
    if why:
        raise MixganError(f"cannot write to {what} {shown} ({why})")
    return path


def check_seed(seed: int) -> int:
    if not 0 <= seed < 2 ** 63:
        raise MixganError(f"--seed must be in 0..2^63-1, got {seed}")
    return seed


def add_device_option(p, default: str | None = "auto") -> None:
    """``--device`` for every command that runs a network; resolved by training.dist.resolve_device."""
    p.add_argument("--device", default=default,
                   help="auto (a GPU where there is one, the default), cpu, cuda or cuda:N")


def recipe_line(cfg) -> str:
    """One line naming the recipe, the base and deltas it is made of, and every value the device chose."""
    from ..config import PRE_RECIPE, Recipe, device_type, device_values

    kind = device_type(cfg.train.device)
    made = cfg.recipe
    if cfg.recipe != PRE_RECIPE:
        try:
            recipe = Recipe.read(cfg.recipe)
            made = f"{cfg.recipe} = {recipe.chain} ({', '.join(str(p) for p in recipe.files)})"
        except MixganError:  # a run's recipe file since removed, or a name this version no longer ships
            made = f"{cfg.recipe} (cannot be read now)"
    chosen = device_values(cfg)
    device = ", ".join(f"{k}={v}" for k, v in chosen.items()) if chosen else "no device-specific values"
    return f"recipe: {made}; device {kind}: {device}"


def describe_config(cfg, auto: dict[str, tuple[object, str]] | None = None) -> str:
    """Every resolved setting with its source: the recipe line, then a key / value / source table.
    ``auto`` gives, for settings left automatic (0), the value the data will give and how."""
    from ..config import flat_dict

    auto = auto or {}
    flat = flat_dict(cfg)
    shown = {k: auto[k][0] if k in auto else v for k, v in flat.items()}
    source = {k: auto[k][1] if k in auto else cfg.sources.get(k, "") for k in flat}
    width = max(len(k) for k in flat)
    vwidth = max(len(repr(v)) for v in shown.values())
    rows = [f"{k:<{width}}  {v!r:<{vwidth}}  {source[k]}" for k, v in shown.items()]
    return "\n".join([recipe_line(cfg), f"{'setting':<{width}}  {'value':<{vwidth}}  source", *rows])


def add_analysis_options(p) -> None:
    """``--json``, ``--seed``, ``--quiet`` and ``--device``: what every command that measures a run shares."""
    p.add_argument("--json", help="also write the results to this JSON file")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_device_option(p)


def format_table(rows: list[tuple[str, object]]) -> str:
    width = max(len(k) for k, _ in rows) if rows else 0
    out = []
    for key, value in rows:
        text = f"{value:.4f}" if isinstance(value, float) else str(value)
        out.append(f"{key:<{width}}  {text}")
    return "\n".join(out)


class BarProgress:
    """A tqdm bar per task for the metrics' ``progress(done, total, description)`` callbacks."""

    def __init__(self):
        self.bar, self.desc = None, None

    def __call__(self, done: int, total: int, desc: str) -> None:
        from tqdm import tqdm

        if self.bar is None or desc != self.desc:
            self.close()
            self.bar = tqdm(total=total, desc=desc, file=sys.stderr, dynamic_ncols=True)
            self.desc = desc
        self.bar.update(done - self.bar.n)
        if done >= total:
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class TaskReporter:
    """Prints ``mixgan: WHAT (about N s)...`` when a library task starts, a bar on a terminal,
    and ``done in N s`` when it ends (:mod:`mixgan.progress`)."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.bar, self.what = None, None

    def begin(self, what: str, total: int | None, eta: float | None) -> None:
        about = f" (about {eta:.0f} s)" if eta is not None else ""
        print(f"mixgan: {what}{about}...", file=self.stream, flush=True)
        self.what = what
        if total and self.stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=what, file=self.stream, dynamic_ncols=True, leave=False)

    def advance(self, done: int) -> None:
        if self.bar is not None:
            self.bar.update(done - self.bar.n)

    def end(self, seconds: float) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        print(f"mixgan: {self.what}: done in {seconds:.0f} s", file=self.stream, flush=True)


class TqdmProgress:
    """The training progress bar: losses, it/s and ETA on stderr (for a terminal)."""

    def __init__(self, desc: str = "train"):
        self.desc, self.bar = desc, None

    def start(self, initial: int, total: int) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, initial=initial, desc=self.desc, unit="it", file=sys.stderr,
                        dynamic_ncols=True, smoothing=0.05)

    def update(self, step: int, logs: dict[str, float]) -> None:
        self.bar.update(step - self.bar.n)
        if step % 10 == 0:
            self.bar.set_postfix({k: f"{v:.3f}" for k, v in logs.items()}, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _training_metric_names() -> dict[str, str]:
    from ..metrics.registry import SCORES, TRAINING_KEYS

    return {k: SCORES[k].display for k in TRAINING_KEYS}


METRIC_NAMES = _training_metric_names()  # the quality measured during training, by the metric registry


def log_line(desc: str, total: int, record: dict) -> str:
    """One plain line for a logged step: step, losses, it/s and the quality measured there."""
    parts = [f"{desc} step {record['step']}/{total}"]
    skip = {"step", "time", "it_per_s", "samples_per_s", "eval_s", "best_step", *METRIC_NAMES}
    parts += [f"{k} {v:.4g}" for k, v in record.items() if k not in skip and isinstance(v, (int, float))]
    if "it_per_s" in record:
        parts.append(f"{record['it_per_s']:.1f} it/s")
    parts += [f"{name} {record[k]:.4g}" for k, name in METRIC_NAMES.items() if isinstance(record.get(k), (int, float))]
    return "  ".join(parts)


class LineProgress:
    """Training progress where stderr is not a terminal (a log file, CI): one line per logged step."""

    def __init__(self, desc: str = "train", stream=None):
        self.desc, self.stream, self.total = desc, stream, 0

    def start(self, initial: int, total: int) -> None:
        self.total = total

    def update(self, step: int, logs: dict[str, float]) -> None:
        pass

    def log(self, record: dict) -> None:
        stream = self.stream or sys.stderr
        stream.write(log_line(self.desc, self.total, record) + "\n")
        stream.flush()

    def close(self) -> None:
        pass


def training_progress(desc: str, quiet: bool = False):
    """None with --quiet, a bar on a terminal, plain lines elsewhere."""
    if quiet:
        return None
    return TqdmProgress(desc) if sys.stderr.isatty() else LineProgress(desc)


def json_ready(value):
    """NaN -> null and infinities -> "inf"/"-inf", recursively, so the JSON is standard."""
    import math

    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value


def write_json(path: str | Path, data: dict) -> Path:
    """Write standard JSON atomically; a missing or unwritable folder is a MixganError."""
    import json

    from ..io import atomic_write_text

    path = Path(path)
    if not path.parent.is_dir():
        raise MixganError(f"{path}: folder {path.parent} does not exist")
    try:
        atomic_write_text(path, json.dumps(json_ready(data), indent=1) + "\n")
    except OSError as exc:
        raise MixganError(f"cannot write {path} ({exc.strerror})") from None
    return path
