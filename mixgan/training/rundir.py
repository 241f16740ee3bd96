"""The run directory: config.toml, stats.jsonl, samples/, checkpoints/ (StyleGAN2-ADA style).

One process writes a run at a time: ``train`` holds the directory's lock (``.writer.lock``, an OS
file lock through ``filelock``, with the holder's pid beside it in ``.writer.pid``) for its whole
life. The OS releases the lock when its holder dies, so a lock file left by a killed process
blocks nobody. Readers (``sample``, ``evaluate``, ``report``) never take it.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from pathlib import Path
from typing import Any

from ..config import Config, dump_toml, load_config
from ..errors import MixganError
from ..io import append_bytes, atomic_write_text, write_error

LOCK_NAME, PID_NAME = ".writer.lock", ".writer.pid"
REAL_PICTURE = "real.png"  # samples/: a grid of real training images, written at step 0
STARTING_PICTURES = (REAL_PICTURE, "step-000000.png")


def default_run_dir(cfg: Config) -> Path:
    """``runs/<model>-<dataset>-<time>-<random>``: two runs started in the same second differ."""
    dataset = cfg.data.dataset.replace(":", "-").replace("/", "-")
    while True:
        path = Path("runs") / f"{cfg.model.name}-{dataset}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
        if not path.exists():
            return path


def _is_scratch(path: Path) -> bool:
    """Lock files and temporary files: nothing a user would miss."""
    return path.name in (LOCK_NAME, PID_NAME) or (path.name.startswith(".") and ".tmp-" in path.name)


class RunLock:
    """The exclusive writer lock of a run directory (non-blocking: a held lock is an error)."""

    def __init__(self, folder: Path):
        self.folder, self._lock = folder, None

    def holder(self) -> str:
        try:
            return self.folder.joinpath(PID_NAME).read_text().strip() or "unknown"
        except OSError:
            return "unknown"

    def acquire(self) -> None:
        from filelock import FileLock, Timeout

        lock = FileLock(self.folder / LOCK_NAME, timeout=0, thread_local=False)
        try:
            lock.acquire()
        except Timeout:
            raise MixganError(f"{self.folder} is being written by another mixgan process (pid {self.holder()}); "
                              "a run has one writer: wait for it to finish or stop it") from None
        except OSError as exc:
            raise write_error(self.folder / LOCK_NAME, exc) from None
        self._lock = lock  # held from here, even if the pid cannot be written: the caller releases it
        atomic_write_text(self.folder / PID_NAME, f"{os.getpid()}\n")

    def release(self) -> None:
        if self._lock is not None:
            if self.holder() == str(os.getpid()):
                (self.folder / PID_NAME).unlink(missing_ok=True)
            self._lock.release()
            self._lock = None

    @property
    def held(self) -> bool:
        return self._lock is not None


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.lock = RunLock(self.path)
        self._made_folder = False

    config_path = property(lambda self: self.path / "config.toml")
    stats_path = property(lambda self: self.path / "stats.jsonl")
    samples = property(lambda self: self.path / "samples")
    checkpoints = property(lambda self: self.path / "checkpoints")
    best_path = property(lambda self: self.path / "best.json")

    def exists(self) -> bool:
        return self.config_path.is_file()

    def _holds_anything(self) -> bool:
        return self.path.exists() and (not self.path.is_dir() or any(not _is_scratch(p) for p in self.path.iterdir()))

    def check_new(self) -> None:
        """Refuse a folder that already holds anything as the place of a new run."""
        if self._holds_anything():
            raise MixganError(f"run directory {self.path} already exists and is not empty "
                              "(use --resume to continue it, or choose another --out)")

    def create(self, cfg: Config) -> None:
        """Make a new run and take its writer lock; refuse a folder that already holds anything."""
        self.check_new()
        self._made_folder = not self.path.exists()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise MixganError(f"cannot write to output folder {self.path} ({exc.strerror})") from None
        try:
            self.lock.acquire()
            self.check_new()  # another process may have made a run here meanwhile
            try:
                self.samples.mkdir(exist_ok=True)
                self.checkpoints.mkdir(exist_ok=True)
            except OSError as exc:
                raise write_error(exc.filename or self.path, exc) from None
            self.write_config(cfg)
        except BaseException:
            self.discard()
            raise

    def discard(self) -> None:
        """Remove a new run that failed before its first checkpoint (nothing in it can be resumed,
        and its folder would block a rerun with the same --out), and release its lock. Everything
        in it was made by this process: ``create`` found the folder empty."""
        if self.lock.held and not any(self.checkpoints.glob("step-*")):
            for entry in self.path.iterdir():
                if entry.name != LOCK_NAME:
                    shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)
            self.lock.release()
            (self.path / LOCK_NAME).unlink(missing_ok=True)
            if self._made_folder:
                shutil.rmtree(self.path, ignore_errors=True)
        self.lock.release()

    def holds_history(self) -> bool:
        """Whether the run has logged anything: a stats line or a sample grid after step 0 (the real
        images and the step-0 grid are written again by any start)."""
        try:
            logged = self.stats_path.is_file() and self.stats_path.stat().st_size > 0
            return logged or any(p.name not in STARTING_PICTURES for p in self.samples.glob("*.png"))
        except OSError:
            return True

    def remove_stale_temporaries(self) -> None:
        """Delete temporary files of killed writers (only call this holding the lock)."""
        for folder in (self.path, self.checkpoints, self.samples):
            for stale in folder.glob(".*.tmp-*"):
                stale.unlink(missing_ok=True)

    def write_config(self, cfg: Config) -> None:
        atomic_write_text(self.config_path, dump_toml(cfg))

    def config(self) -> Config:
        if not self.exists():
            raise MixganError(f"{self.path} is not a mixgan run (no config.toml)")
        return load_config(self.config_path)

    def append_stats(self, record: dict[str, Any]) -> None:
        append_bytes(self.stats_path, (json.dumps(record) + "\n").encode())

    def _stat_lines(self) -> list[tuple[str, dict[str, Any]]]:
        """(line, record) of every whole JSON-object line of stats.jsonl (a line cut short by a
        crash, or one that is not an object, is left out)."""
        if not self.stats_path.is_file():
            return []
        try:
            text = self.stats_path.read_text(errors="replace")
        except OSError as exc:
            raise MixganError(f"cannot read {self.stats_path} ({exc.strerror})") from None
        out = []
        for line in text.splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and isinstance(record.get("step", 0), int):
                out.append((line, record))
        return out

    def truncate_stats(self, step: int) -> None:
        """Drop stats logged after ``step`` (they will be logged again after a resume)."""
        if not self.stats_path.is_file():
            return
        keep = [line for line, record in self._stat_lines() if record.get("step", 0) <= step]
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
        return [record for _, record in self._stat_lines()]
