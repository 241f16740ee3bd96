"""The run directory: config.toml, stats.jsonl, samples/, checkpoints/ (StyleGAN2-ADA style)."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ..config import Config, dump_toml, load_config
from ..errors import MixganError
from ..io import atomic_write_text


def default_run_dir(cfg: Config) -> Path:
    dataset = cfg.data.dataset.replace(":", "-").replace("/", "-")
    return Path("runs") / f"{cfg.model.name}-{dataset}-{time.strftime('%Y%m%d-%H%M%S')}"


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    config_path = property(lambda self: self.path / "config.toml")
    stats_path = property(lambda self: self.path / "stats.jsonl")
    samples = property(lambda self: self.path / "samples")
    checkpoints = property(lambda self: self.path / "checkpoints")
    best_path = property(lambda self: self.path / "best.json")

    def exists(self) -> bool:
        return self.config_path.is_file()

    def create(self, cfg: Config) -> None:
        """Make a new run; refuse a folder that already holds anything."""
        if self.path.exists() and (not self.path.is_dir() or any(self.path.iterdir())):
            raise MixganError(f"run directory {self.path} already exists and is not empty "
                              "(use --resume to continue it, or choose another --out)")
        try:
            self.samples.mkdir(parents=True, exist_ok=True)
            self.checkpoints.mkdir(exist_ok=True)
            probe = self.path / ".write-test"
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            raise MixganError(f"cannot write to output folder {self.path} ({exc.strerror})") from None
        self.write_config(cfg)

    def write_config(self, cfg: Config) -> None:
        atomic_write_text(self.config_path, dump_toml(cfg))

    def config(self) -> Config:
        if not self.exists():
            raise MixganError(f"{self.path} is not a mixgan run (no config.toml)")
        return load_config(self.config_path)

    def append_stats(self, record: dict[str, Any]) -> None:
        with open(self.stats_path, "a") as fh:
            fh.write(json.dumps(record) + "\n")
            fh.flush()

    def truncate_stats(self, step: int) -> None:
        """Drop stats logged after ``step`` (they will be logged again after a resume)."""
        if not self.stats_path.is_file():
            return
        keep = []
        for line in self.stats_path.read_text().splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    keep.append(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a crash
        atomic_write_text(self.stats_path, "".join(l + "\n" for l in keep))

    def read_best(self) -> dict[str, Any] | None:
        """{"step", "fid"} of the best checkpoint by FID during training, or None."""
        try:
            best = json.loads(self.best_path.read_text())
        except (OSError, json.JSONDecodeError):
            return None
        return best if isinstance(best, dict) and isinstance(best.get("step"), int) else None

    def write_best(self, best: dict[str, Any] | None) -> None:
        if best is None:
            self.best_path.unlink(missing_ok=True)
        else:
            atomic_write_text(self.best_path, json.dumps(best) + "\n")

    def read_stats(self) -> list[dict[str, Any]]:
        if not self.stats_path.is_file():
            return []
        out = []
        for line in self.stats_path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out
