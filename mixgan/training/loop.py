"""The training loop: seeded batches, alternating updates, logging, grids, checkpoints, resume.

Every random draw of step s comes from generators seeded by (seed, s, rank), and batch
indices are a pure function of the step, so a resumed run repeats exactly what an
uninterrupted one would have done: resuming restores weights and optimizer moments only.

No step waits for the device: batch indices are sliced from a per-epoch permutation already on
the device, losses are summed there (:class:`LossMonitor`), and the host reads them only at a
vote (every ``VOTE_EVERY`` steps and before every log line, grid and checkpoint) or a log line.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import signal
import time
import warnings
from pathlib import Path
from typing import Any, Protocol

import torch

from ..config import Config
from ..data import configured_dataset
from ..data.batches import BatchSource
from ..errors import Interrupted, MixganError, MixganWarning
from ..io import atomic_write_text
from ..models import GANModel, build_model
from ..nets import auto_width
from ..viz import image_grid, save_png, save_samples_picture
from . import dist
from .checkpoint import describe_damage, load_module_state, move_aside, read_checkpoint, save_checkpoint, scan_checkpoints
from .interrupt import StopRequest
from .quality import TrainingEval, can_evaluate
from .rundir import REAL_PICTURE, RunDir, default_run_dir


class TrainingDiverged(MixganError):
    """A loss became NaN or infinite."""


class Progress(Protocol):
    """``start``, ``update`` after every step, ``close``; an optional ``log(record)`` receives
    every record written to stats.jsonl."""

    def start(self, initial: int, total: int) -> None: ...
    def update(self, step: int, logs: dict[str, float]) -> None: ...
    def close(self) -> None: ...


def step_seed(seed: int, step: int, rank: int = 0) -> int:
    return (seed * 0x9E3779B1 + step * 7919 + rank * 104729 + 1) % (2 ** 63)


VOTE_EVERY = 16  # steps between NaN votes (besides the one before every log line, grid and checkpoint)


class BatchStream:
    """Indices of the b-th batch: each epoch a permutation of this rank's shard, seeded by epoch.

    The permutation is drawn on the CPU (the same on every device) and moved to ``device`` once
    per epoch, so a batch's indices are a slice already there."""

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                 device: torch.device | str = "cpu"):
        self.size = len(range(rank, n, world_size))  # this rank's items: rank, rank + world_size, ...
        if self.size == 0:
            raise MixganError(f"the training set ({n} items) is smaller than the number of processes")
        self.rank, self.world_size = rank, world_size
        self.batch_size, self.seed, self.device = batch_size, seed, torch.device(device)
        self._epoch, self._perm = -1, None

    def _permutation(self, epoch: int) -> torch.Tensor:
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(step_seed(self.seed, epoch, 7))
            perm = torch.randperm(self.size, generator=g)
            if self.world_size > 1:
                perm = perm.mul_(self.world_size).add_(self.rank)
            if self.device.type == "cuda":  # pinned, so the non-blocking copy does not wait for the GPU
                perm = perm.pin_memory()
            self._epoch, self._perm = epoch, perm.to(self.device, non_blocking=True)
        return self._perm

    def __call__(self, b: int) -> torch.Tensor:
        n, pos, need, parts = self.size, b * self.batch_size, self.batch_size, []
        while need:
            epoch, offset = divmod(pos, n)
            take = min(need, n - offset)
            parts.append(self._permutation(epoch)[offset:offset + take])
            pos, need = pos + take, need - take
        return parts[0] if len(parts) == 1 else torch.cat(parts)


class LossMonitor:
    """A step's losses summed on the device, and the first step with a non-finite one.

    ``add`` queues device ops only; ``first_bad`` (a vote over every rank) and ``mean`` are the
    only host reads.
    """

    NONE = 2 ** 62  # no bad step yet (the identity of the MIN vote)

    def __init__(self, device: torch.device):
        self.device, self.names, self.count = device, None, 0
        self.bad_step = torch.tensor(self.NONE, dtype=torch.long, device=device)

    def add(self, step: int, out: dict) -> None:
        values = torch.stack([torch.as_tensor(v, dtype=torch.float32, device=self.device).detach().reshape(())
                              for v in out.values()])
        if self.names is None:
            self.names, self.bad_values = list(out), torch.zeros_like(values)
            self.total = torch.zeros_like(values)
        self.total += values
        self.count += 1
        newly = torch.isfinite(values).all().logical_not() & (self.bad_step == self.NONE)
        self.bad_step = torch.where(newly, step, self.bad_step)
        self.bad_values = torch.where(newly, values, self.bad_values)

    def first_bad(self) -> str | None:
        """None while every rank's losses are finite; else what went wrong first, and at which step."""
        step = dist.min_over_ranks(self.bad_step)
        if step == self.NONE:
            return None
        if int(self.bad_step) != step:
            return f"a loss on another process became non-finite at step {step + 1}"
        values = self.bad_values.tolist()
        name = next(n for n, v in zip(self.names, values) if not math.isfinite(v))
        return f"{name} became {values[self.names.index(name)]} at step {step + 1}"

    def mean(self) -> dict[str, float]:
        """Each loss's mean over the steps since the last call."""
        values = (self.total / max(self.count, 1)).tolist()
        self.total.zero_()
        self.count = 0
        return dict(zip(self.names, values))


SETTINGS_FIXED_BY_RUN = ("data", "model", "prior")
FREE_ON_RESUME = {"data.workers"}  # settings of those sections that do not change what is trained
RESUME_SOURCE = "command line (resume)"  # the source of a setting changed on resuming (``resume_config``)


def resume_config(path: str | Path, changes: list[tuple[str, Any]] = ()) -> Config:
    """The config to continue the run at ``path`` with: its own, with ``changes`` (``(key, value)``)
    applied and marked as given on resuming; ``train`` checks it (:func:`check_resume`)."""
    from ..config import canonical_key, set_value, validate

    cfg = RunDir(path).config()
    cfg.out = str(path)
    for key, value in changes:
        set_value(cfg, key, value)
        cfg.sources[canonical_key(key)] = RESUME_SOURCE
    validate(cfg)
    return cfg


def data_identity(data) -> dict:
    """What a run records of its training data, to notice on resume that the data changed."""
    return {"fingerprint": data.fingerprint(), "train": len(data.x_train), "test": len(data.x_test),
            "classes": data.num_classes}


def check_resume(run: RunDir, cfg: Config, record: dict | None, identity: dict | None,
                 accept_changed_data: bool = False) -> None:
    """The one check of a resume, for the CLI and the Python API alike: refuse

    - a config.toml edited by hand since the newest checkpoint, in a setting not given on resuming,
    - data, model or prior settings other than those the run was trained with,
    - training data whose ``identity`` (:func:`data_identity`) is not the one the newest checkpoint
      recorded (unless ``accept_changed_data``)."""
    path = run.path
    disk = run.config().to_dict()
    saved = record.get("config") if record else None
    saved = saved if isinstance(saved, dict) else disk
    now = cfg.to_dict()
    edits = [(f"{section}.{key}", value, disk[section][key]) for section, values in saved.items()
             if isinstance(values, dict) and isinstance(disk.get(section), dict)
             for key, value in values.items() if key in disk[section] and disk[section][key] != value
             and now.get(section, {}).get(key) == disk[section][key]]
    edits = [e for e in edits if e[0] != "train.steps" and cfg.sources.get(e[0]) != RESUME_SOURCE]
    if edits:
        key, old, new = edits[0]
        fixed = key.split(".")[0] in SETTINGS_FIXED_BY_RUN
        remedy = ("undo the edit (a run's data, model and prior settings are fixed)" if fixed
                  else f"pass it as --set {key}={new} to use it, or undo the edit")
        raise MixganError(f"--resume: {run.config_path} was edited since the checkpoint of step {record['step']} "
                          f"({key}: {old!r} -> {new!r}{f' and {len(edits) - 1} more' if len(edits) > 1 else ''}); "
                          + remedy)
    for section in SETTINGS_FIXED_BY_RUN:
        for key, value in (saved.get(section) or {}).items():
            new = (now.get(section) or {}).get(key, value)
            if new != value and f"{section}.{key}" not in FREE_ON_RESUME:
                raise MixganError(f"--resume: {path} was trained with {section}.{key}={value!r}, "
                                  f"not {new!r}; start a new run for other settings")
    before = record.get("data_identity") if record else None
    if isinstance(before, dict) and identity is not None and not accept_changed_data:
        after = identity
        if before.get("fingerprint") != after["fingerprint"]:
            diff = next((f"{what} had {before[key]} items, now {after[key]}"
                         for key, what in (("train", "the training set"), ("test", "the test set"))
                         if before.get(key) != after[key]), None)
            if diff is None and before.get("classes") != after["classes"]:
                diff = f"it had {before.get('classes')} classes, now {after['classes']}"
            diff = diff or f"the same number of items ({after['train']} training) with other contents"
            raise MixganError(f"--resume: the data of {path} ({cfg.data.dataset}) changed since step {record['step']}: "
                              f"{diff}; pass --accept-changed-data (Python: accept_changed_data=True) if it is meant")


def model_states(model: GANModel) -> dict:
    states = {name: m.state_dict() for name, m in model.modules().items()}
    states.update({name: o.state_dict() for name, o in model.optimizers().items()})
    states["extra"] = model.extra_tensors()
    return states


def restore(model: GANModel, states: dict, record: dict, optimizers: bool = True) -> None:
    """Load a checkpoint's states into a model built from the same config."""
    if record.get("model") != model.name:
        raise MixganError(f"checkpoint is from model '{record.get('model')}', not '{model.name}'")
    for name, module in model.modules().items():
        if name not in states:
            raise MixganError(f"checkpoint has no '{name}': is it from another model?")
        load_module_state(module, states[name], name)
    if optimizers:
        for name, opt in model.optimizers().items():
            settings = [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
            try:
                opt.load_state_dict(states[name])
            except (KeyError, ValueError, TypeError, AttributeError, IndexError, RuntimeError) as exc:
                raise MixganError(f"checkpoint optimizer state '{name}' does not fit this model ({exc})") from None
            for group, own in zip(opt.param_groups, settings):
                # the config's lr/betas win over the saved ones; keys a schedule added (initial_lr)
                # are derived again from the config
                for key in set(group) - set(own) - {"params"}:
                    del group[key]
                group.update(own)
    model.load_extra_tensors(states.get("extra", {}))


def _write_grid(model: GANModel, run: RunDir, step: int, data):
    """Write the step's sample picture; returns the grid (H x W [x C] uint8) for image data, else None."""
    if data.is_image:
        x, rows = model.sample_grid()
        grid = image_grid(x, rows)
        save_png(grid, run.samples / f"step-{step:06d}.png")
        atomic_write_text(run.samples / "rows.json", json.dumps({"rows": rows, "labels": model.grid_labels()}))
        return grid
    s = model.sample(2000, generator=torch.Generator(model.device).manual_seed(0))
    save_samples_picture(s.x, 0, run.samples / f"step-{step:06d}.png", colors=s.component,
                         reference=data.centers, title=f"{model.name} step {step}")
    return None


def _summary_writer_class():
    """TensorBoard's SummaryWriter, looked up before a run directory is touched."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise MixganError("--tensorboard needs the tensorboard package: pip install 'mixgan[tensorboard]'") from None
    return SummaryWriter


class _TensorBoard:
    def __init__(self, path: Path, writer_class):
        self.writer = writer_class(str(path / "tensorboard"))

    def log(self, record: dict) -> None:
        for key, value in record.items():
            if key not in ("step", "time") and isinstance(value, (int, float)):
                self.writer.add_scalar(key, value, record["step"])
        self.writer.flush()

    def image(self, grid, step: int) -> None:
        self.writer.add_image("samples", grid if grid.ndim == 3 else grid[..., None], step, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def set_lr_factor(model: GANModel, factor: float) -> None:
    """Scale every optimizer's learning rate to ``factor`` times its initial value."""
    for opt in model.optimizers().values():
        for group in opt.param_groups:
            group["lr"] = group.setdefault("initial_lr", group["lr"]) * factor


def prepare_run(cfg: Config, resume: bool, identity: dict | None = None,
                accept_changed_data: bool = False) -> tuple[RunDir, tuple | None]:
    """Create (rank 0) or reopen the run directory, holding its writer lock; every rank gets the
    same path and, on resume, the checkpoint to continue from (or None)."""
    path = Path(cfg.out) if cfg.out else None
    if resume and path is None:
        raise MixganError("--resume needs --out RUN naming the run to continue")
    if path is None:
        path = dist.broadcast_object(default_run_dir(cfg))
        cfg.out = str(path)
    run = RunDir(path)
    found, outcome = None, None
    if dist.is_main():
        try:
            if resume:
                found = _reopen(run, cfg, identity, accept_changed_data)
            else:
                run.create(cfg)
            outcome = str(run.checkpoints / found[1]["tensors"]) if found else ""
        except MixganError as exc:
            if dist.world()[1] == 1:
                raise
            outcome = MixganError(str(exc))
    outcome = dist.broadcast_object(outcome)
    if isinstance(outcome, MixganError):
        raise outcome
    if outcome and not dist.is_main():
        found = read_checkpoint(Path(outcome).with_suffix(".json"))
    return run, found


def _check_steps(path: Path, cfg: Config, start: int) -> None:
    if cfg.train.steps < start:
        raise MixganError(f"--resume: {path} has trained {start} steps; --steps {cfg.train.steps} is below that "
                          f"(give more than {start} to extend it)")


def trained_steps(run: str | Path) -> int:
    """The step of a run's newest intact checkpoint (0 without one)."""
    found, _ = scan_checkpoints(RunDir(run).checkpoints)
    return found[1]["step"] if found else 0


def check_start(cfg: Config, resume: bool) -> None:
    """What a run refuses about its run directory before it loads data, without taking the lock:
    a new run's folder must be new or empty; a resumed one must pass :func:`check_resume` (the
    data's identity aside: that needs the data) with ``train.steps`` not below its trained step.
    ``--dry-run`` checks the same."""
    run = RunDir(cfg.out)
    if not resume:
        run.check_new()
        return
    if not run.exists():
        raise MixganError(f"--resume: {run.path} is not a mixgan run (no config.toml)")
    found, _ = scan_checkpoints(run.checkpoints)
    check_resume(run, cfg, found[1] if found else None, identity=None)
    _check_steps(run.path, cfg, found[1]["step"] if found else 0)


def _reopen(run: RunDir, cfg: Config, identity: dict | None, accept_changed_data: bool) -> tuple | None:
    """Take the writer lock of a run to resume, find its newest intact checkpoint (damaged newer ones
    are moved aside as ``*.damaged`` with a warning) and check the resume against it (:func:`check_resume`)."""
    path = run.path
    if not run.exists():
        raise MixganError(f"--resume: {path} is not a mixgan run (no config.toml)")
    try:
        run.lock.acquire()
        run.remove_stale_temporaries()
        found, damaged = scan_checkpoints(run.checkpoints)
        if found is None and (damaged or run.holds_history()):
            why = (f"{damaged[0].path.name}: {damaged[0].reason}" if damaged
                   else "the checkpoints folder is missing" if not run.checkpoints.is_dir() else "no checkpoint in it")
            raise MixganError(f"--resume: {path} has a history (stats.jsonl, samples) but no intact checkpoint "
                              f"({why}); resuming would start again from step 0 over it: remove the folder or choose another --out")
        start = found[1]["step"] if found else 0
        check_resume(run, cfg, found[1] if found else None, identity, accept_changed_data)
        _check_steps(path, cfg, start)
        for d, line in zip(damaged, describe_damage(damaged, start)):
            moved = move_aside([d])
            warnings.warn(f"{line}; moved aside as {', '.join(m.name for m in moved)}", MixganWarning, stacklevel=2)
        run.samples.mkdir(exist_ok=True)
        run.checkpoints.mkdir(exist_ok=True)
        run.write_config(cfg)
        run.truncate_stats(start)
    except BaseException:
        run.lock.release()
        raise
    return found


def _seed_global(seed: int, device: torch.device) -> None:
    """Seed the global RNGs this run uses. Not torch.manual_seed: where CUDA is not initialised it
    formats a stack trace for lazy CUDA/XPU/MTIA seeding at every call, about 2 ms a step."""
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        torch.cuda.manual_seed(seed)


def _memory_format(cfg: Config, data) -> torch.memory_format | None:
    return torch.channels_last if cfg.train.channels_last and data.is_image else None


def _check_compile(cfg: Config, device: torch.device) -> None:
    if cfg.train.compile and device.type == "cuda":
        raise MixganError("train.compile=true is not supported on CUDA (inductor fails on these networks' "
                          "channels-last convolution backward); train without it")


def _compile(module: torch.nn.Module) -> None:
    """Compile a module's forward in place, so its state_dict keys and checkpoints stay the same."""
    if not hasattr(module, "compile"):
        raise MixganError("train.compile needs PyTorch >= 2.2 (nn.Module.compile)")
    module.compile()


GRID_SECONDS = 60  # early in a run, a sample grid at least this often (wall clock) ...
GRID_EARLY_SECONDS = 300  # ... during its first five minutes


@dataclasses.dataclass
class Event:
    """Something the loop does after some steps: ``action(done)`` (which returns the names of other
    events it makes due), every ``every`` steps (0: never) from step ``first`` on and at the last
    step. A NaN vote on every rank precedes it, so a diverged model is never logged, pictured or saved."""

    name: str
    every: int
    action: Any
    first: int = 0

    def due(self, done: int, last: bool) -> bool:
        return self.every > 0 and done >= self.first and (done % self.every == 0 or last)


def train(cfg: Config, resume: bool = False, progress: Progress | None = None,
          accept_changed_data: bool = False) -> RunDir:
    """Train ``cfg``'s model; with ``resume``, continue ``cfg.out`` from its last checkpoint
    (``accept_changed_data``: even where its training data changed since).

    Under torchrun every rank runs this; the process group is created here (and destroyed on
    return) unless the caller already joined one.
    """
    device = dist.resolve_device(cfg.train.device)
    created = dist.init_from_env(device)
    opened: list[RunDir] = []
    try:
        return _train(cfg, resume, progress, device, opened, accept_changed_data)
    except BaseException:
        if opened and not resume:
            opened[0].discard()  # a new run that failed before holding anything of value leaves nothing
        raise
    finally:
        for run in opened:
            run.lock.release()
        if created:
            dist.shutdown()


def settings_from_data(cfg: Config, shape: tuple[int, ...], num_classes: int = 0) -> None:
    """Settings a recipe leaves to the data, made concrete (and their source says so), so that a
    run directory's config.toml and ``--dry-run`` show the values that train:

    - ``model.width = 0``: the width for the image side (:func:`mixgan.nets.auto_width`);
    - the encoder GM-GAN gives every class one Gaussian (K = N, so clustering scores one Gaussian
      per class) where the user left K to a recipe, whatever number of classes a labelled folder
      or shard set has."""
    if cfg.model.width == 0:
        cfg.model.width = auto_width(cfg.model.arch, shape)
        what = f"{shape[1]} px images" if len(shape) == 3 else "not images"
        cfg.sources["model.width"] = f"auto: {what}"
    source = cfg.sources.get("prior.components", "default")
    chosen = not (source == "default" or source.startswith(("recipe", "auto")))
    if (cfg.model.name == "gmgan" and cfg.encoder.enabled and num_classes >= 2 and not chosen
            and cfg.prior.components != num_classes):
        cfg.prior.components = num_classes
        cfg.sources["prior.components"] = f"auto: the data's {num_classes} classes"


def _load_data(cfg: Config):
    data = configured_dataset(cfg.data, cfg.train.seed)
    if len(data.x_train) == 0:
        raise MixganError(f"the training set of {data.name} is empty ({len(data.x_test)} item(s), all held out "
                          "as the test split): give it more data")
    return data


def _write_real(run: RunDir, data) -> None:
    """samples/real.png: a grid of the first training images (what the samples should look like)."""
    if data.is_image and not (run.samples / REAL_PICTURE).exists():
        x = data.images("train", torch.arange(min(100, len(data.x_train))))
        save_png(image_grid(x, max(1, math.ceil(len(x) / 10))), run.samples / REAL_PICTURE)


def _train(cfg: Config, resume: bool, progress: Progress | None, device: torch.device,
           opened: list[RunDir], accept_changed_data: bool = False) -> RunDir:
    # ---- setup: data and model first, so that a bad file or setting fails before a run directory is
    # touched; then the run directory with a picture of the data, before the model's slow preparations
    rank, world_size = dist.world()
    main = rank == 0
    t = cfg.train
    _check_compile(cfg, device)
    torch.manual_seed(t.seed)
    data = _load_data(cfg)
    if not resume:
        settings_from_data(cfg, data.shape, data.num_classes)
    model = build_model(cfg, data.spec(), device)
    writer_class = _summary_writer_class() if (t.tensorboard and main) else None
    identity = data_identity(data) if main else None  # read once: a fingerprint reads the data's files
    run, found = prepare_run(cfg, resume, identity, accept_changed_data)
    opened.append(run)
    if main:
        _write_real(run, data)
    model.attach_data(data)  # (a new run that fails here is removed again)
    model.attach_run(run.path)
    start = 0
    if found is not None:
        states, record = found
        restore(model, states, record)
        start = record["step"]
        if record.get("batches_read", start * t.d_steps) != start * t.d_steps:
            raise MixganError(f"--resume: the checkpoint's data position does not match its step {start}")
    if main:
        from .. import __version__

        atomic_write_text(run.path / "run.json", json.dumps(
            {"mixgan": __version__, "torch": torch.__version__, "device": str(device), "processes": world_size}))
        if resume:
            best = run.read_best()
            if best is not None and best["step"] > start:
                run.write_best(None)
    fmt = _memory_format(cfg, data)
    if fmt is not None:
        model.G.to(memory_format=fmt)
        model.D.to(memory_format=fmt)
    if t.compile:
        _compile(model.G.net)
        _compile(model.D)
    model.wrap_for_training(lambda module: dist.wrap(module, device))
    # batch b's instances: a slice of a per-epoch permutation (on the device the source indexes it)
    order = BatchStream(len(data.x_train), t.batch_size, t.seed, rank, world_size, "cpu" if data.streamed else device)
    stored = (data.x_train, data.y_train, data.cond_train) if data.streamed else (model.x_train, model.y_train, model.c_train)
    source = BatchSource(*stored, order, device, model.neighbours(), seed=t.seed, d_steps=t.d_steps,
                         levels=data.levels, start=start * t.d_steps, workers=cfg.data.workers)
    board = _TensorBoard(run.path, writer_class) if writer_class else None
    evaluator = None  # made at the first evaluation: a run shorter than eval_every never loads the classifier
    best = run.read_best() if main else None
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if t.amp and device.type == "cuda"
                else contextlib.nullcontext())
    gen = torch.Generator(device)
    monitor = LossMonitor(device)
    state = {"logs": {}, "quality": {}, "improved": False, "last_ckpt": start, "first_log": True}
    clock = {"tick": time.perf_counter(), "tick_step": start, "eval_s": 0.0, "grid": 0.0}
    started = clock["tick"]

    def next_batch(b: int):
        batch = model.real_batch(source.get(b))
        if fmt is not None:
            batch.x = batch.x.contiguous(memory_format=fmt)
        return batch

    # ---- what happens on which steps ----------------------------------------------------
    def evaluate(done: int) -> set[str]:
        nonlocal evaluator, best
        quality, improved = {}, False
        if main:
            began = time.perf_counter()
            evaluator = evaluator or TrainingEval(data, t.eval_samples, device, seed=t.seed)
            quality = {k: round(v, 6) if isinstance(v, float) else v for k, v in evaluator(model).items()}
            quality["eval_s"] = round(time.perf_counter() - began, 3)
            clock["eval_s"] += quality["eval_s"]
            clock["tick"] += quality["eval_s"]  # it/s counts training steps only
            improved = best is None or quality["fid"] < best["fid"]
            if improved:
                best = {"step": done, "fid": quality["fid"]}
            if best is not None:
                quality["best_step"] = best["step"]
        state["quality"], state["improved"] = quality, dist.broadcast_object(improved)
        return {"log", "checkpoint"} if state["improved"] else {"log"}  # the best step's checkpoint is kept

    def log(done: int) -> set[str]:
        state["logs"] = monitor.mean()
        if main:
            now = time.perf_counter()
            rate = (done - clock["tick_step"]) / max(now - clock["tick"], 1e-9)
            record = {"step": done, "time": round(time.time(), 3), **{k: round(v, 6) for k, v in state["logs"].items()},
                      "it_per_s": round(rate, 3), "samples_per_s": round(rate * t.batch_size * world_size, 1),
                      **state["quality"]}
            run.append_stats(record)
            if board:
                board.log(record)
            if progress and hasattr(progress, "log"):
                progress.log(record)
            clock["tick"], clock["tick_step"] = now, done
        state["quality"] = {}
        first, state["first_log"] = state["first_log"], False
        return {"grid"} if first else set()  # a picture with the first numbers

    def grid(done: int) -> set[str]:
        if main:
            picture = _write_grid(model, run, done, data)
            if board and picture is not None:
                board.image(picture, done)
        clock["grid"] = time.perf_counter()
        return set()

    def checkpoint(done: int) -> set[str]:
        if main:
            save_checkpoint(run.checkpoints, done, model_states(model),
                            {"model": model.name, "dataset": cfg.data.dataset,
                             "data_spec": dataclasses.asdict(model.spec), "batches_read": done * t.d_steps,
                             "data_identity": identity,
                             "config": {k: v for k, v in cfg.to_dict().items() if k != "out"}},
                            keep=t.keep_checkpoints, protect=(best["step"],) if best else ())
            if state["improved"]:
                run.write_best(best)
        state["last_ckpt"], state["improved"] = done, False
        dist.barrier()
        return set()

    # in this order on a step where several are due: an evaluation's scores go into that step's log line
    schedule = [Event("evaluate", t.eval_every if can_evaluate(data) else 0, evaluate, first=t.eval_every),
                Event("log", t.log_every, log), Event("grid", t.sample_every, grid),
                Event("checkpoint", t.checkpoint_every, checkpoint)]

    if main and start == 0:
        grid(0)
    clock["grid"] = time.perf_counter()
    if progress and main:
        progress.start(start, t.steps)
    stop = StopRequest().install()
    try:
        for step in range(start, t.steps):
            # ---- one training step: every random draw seeded by (seed, step, rank) ----
            # rank r seeds its global RNG with 2r and its noise generator with 2r + 1: no two streams meet
            _seed_global(step_seed(t.seed, step, 2 * rank), device)
            gen.manual_seed(step_seed(t.seed, step, 2 * rank + 1))
            draws = iter(range(step * t.d_steps, (step + 1) * t.d_steps))
            model.step = step
            if t.lr_decay == "linear":
                set_lr_factor(model, 1 - step / t.steps)
            with autocast:
                out = model.train_step(lambda: next_batch(next(draws)), gen)
            monitor.add(step, out)
            done = step + 1
            # ---- what is due after it (the same steps on every rank; clocks are host-side, no sync) ----
            now = time.perf_counter()
            last = done == t.steps or (t.max_seconds > 0 and now - started - clock["eval_s"] >= t.max_seconds)
            if t.max_seconds > 0 and world_size > 1:
                last = not dist.all_finite(not last)  # every rank stops at the same step
            due = {e.name for e in schedule if e.due(done, last)}
            interrupted = stop.agreed(done % VOTE_EVERY == 0 or bool(due))
            if interrupted:
                due |= {"grid", "checkpoint"}  # a stop keeps its weights and shows where they are
            if done % VOTE_EVERY == 0 or due:
                bad = monitor.first_bad()
                if bad is not None:
                    kept = (f"the last good checkpoint (step {state['last_ckpt']}) is kept in {run.checkpoints}"
                            if state["last_ckpt"] else "no checkpoint had been written yet")
                    raise TrainingDiverged(f"{bad}; stopped, {kept}")
            for event in schedule:
                if event.name in due:
                    due |= event.action(done)
            if main and "grid" not in due and now - started < GRID_EARLY_SECONDS and now - clock["grid"] >= GRID_SECONDS:
                grid(done)  # early feedback: rank 0 alone, no vote (sampling changes no weights)
            if interrupted and not last:
                raise Interrupted(done, stop.signum or signal.SIGTERM, str(run.path))
            if progress and main:
                progress.update(done, state["logs"])
            if last:
                break
        dist.sync_buffers(model.modules().values())
    finally:
        source.close()
        stop.restore()
        if progress and main:
            progress.close()
        if board:
            board.close()
    return run
