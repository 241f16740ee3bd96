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
from typing import Protocol

import torch

from ..config import Config
from ..data import load_dataset
from ..errors import Interrupted, MixganError, MixganWarning
from ..io import atomic_write_text
from ..models import GANModel, build_model
from ..viz import image_grid, save_png, save_samples_picture
from . import dist
from .checkpoint import describe_damage, load_module_state, move_aside, read_checkpoint, save_checkpoint, scan_checkpoints
from .interrupt import StopRequest
from .quality import TrainingEval, can_evaluate
from .rundir import RunDir, default_run_dir


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


def _check_resume(saved: Config | dict, cfg: Config, path: Path) -> None:
    """Refuse other data, model or prior settings than ``saved`` (a Config, or the dict of one
    that a checkpoint records: its keys alone are compared)."""
    saved = saved if isinstance(saved, dict) else saved.to_dict()
    for section in SETTINGS_FIXED_BY_RUN:
        a, b = saved.get(section) or {}, dataclasses.asdict(getattr(cfg, section))
        for key in a:
            if key in b and a[key] != b[key] and f"{section}.{key}" not in FREE_ON_RESUME:
                raise MixganError(f"--resume: {path} was trained with {section}.{key}={a[key]!r}, "
                                  f"not {b[key]!r}; start a new run for other settings")


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


def prepare_run(cfg: Config, resume: bool) -> tuple[RunDir, tuple | None]:
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
                found = _reopen(run, cfg)
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


def _reopen(run: RunDir, cfg: Config) -> tuple | None:
    """Take the writer lock of a run to resume and find its newest intact checkpoint; damaged
    newer ones are moved aside as ``*.damaged`` with a warning."""
    path = run.path
    if not run.exists():
        raise MixganError(f"--resume: {path} is not a mixgan run (no config.toml)")
    _check_resume(run.config(), cfg, path)
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
        if found and isinstance(found[1].get("config"), dict):
            _check_resume(found[1]["config"], cfg, path)
        if cfg.train.steps < start:
            raise MixganError(f"--resume: {path} has trained {start} steps; --steps {cfg.train.steps} is below that "
                              f"(give more than {start} to extend it)")
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


def train(cfg: Config, resume: bool = False, progress: Progress | None = None) -> RunDir:
    """Train ``cfg``'s model; with ``resume``, continue ``cfg.out`` from its last checkpoint.

    Under torchrun every rank runs this; the process group is created here (and destroyed on
    return) unless the caller already joined one.
    """
    device = dist.resolve_device(cfg.train.device)
    created = dist.init_from_env(device)
    opened: list[RunDir] = []
    try:
        return _train(cfg, resume, progress, device, opened)
    except BaseException:
        if opened and not resume:
            opened[0].discard()  # a new run that failed before holding anything of value leaves nothing
        raise
    finally:
        for run in opened:
            run.lock.release()
        if created:
            dist.shutdown()


def _train(cfg: Config, resume: bool, progress: Progress | None, device: torch.device,
           opened: list[RunDir]) -> RunDir:
    rank, world_size = dist.world()
    main = rank == 0
    t = cfg.train
    _check_compile(cfg, device)
    torch.manual_seed(t.seed)
    # data and model first: a bad file or setting must fail before a run directory is touched
    data = load_dataset(cfg.data.dataset, cfg.data.data_dir, seed=t.seed, test_fraction=cfg.data.test_fraction,
                        resolution=cfg.data.resolution, channels=cfg.data.channels)
    if len(data.x_train) == 0:
        raise MixganError(f"the training set of {data.name} is empty ({len(data.x_test)} item(s), all held out "
                          "as the test split): give it more data")
    stream = BatchStream(len(data.x_train), t.batch_size, t.seed, rank, world_size,
                         "cpu" if data.streamed else device)  # streamed: the order the loader's workers read
    model = build_model(cfg, data.spec(), device)
    model.attach_data(data)
    writer_class = _summary_writer_class() if (t.tensorboard and main) else None
    run, found = prepare_run(cfg, resume)
    opened.append(run)
    model.attach_run(run.path)
    if main:
        from .. import __version__

        atomic_write_text(run.path / "run.json", json.dumps(
            {"mixgan": __version__, "torch": torch.__version__, "device": str(device), "processes": world_size}))
    start = 0
    if found is not None:
        states, record = found
        restore(model, states, record)
        start = record["step"]
        if record.get("batches_read", start * t.d_steps) != start * t.d_steps:
            raise MixganError(f"--resume: the checkpoint's data position does not match its step {start}")
    if resume and main:
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
    if data.streamed:  # shards: read by DataLoader workers from batch start * d_steps on
        from ..data.loader import StreamedBatches

        streamed = StreamedBatches(data.x_train, data.y_train, model.stream_order(stream), start * t.d_steps,
                                   cfg.data.workers, device)

    def next_batch(b: int):
        batch = model.loaded_batch(*streamed.get(b)) if data.streamed else model.batch(stream(b))
        if fmt is not None:
            batch.x = batch.x.contiguous(memory_format=fmt)
        return batch

    board = _TensorBoard(run.path, writer_class) if writer_class else None
    evaluates = t.eval_every > 0 and can_evaluate(data)  # the same on every rank; rank 0 evaluates
    evaluator = None  # made at the first evaluation: a run shorter than eval_every never loads the classifier
    best = run.read_best() if main else None
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if t.amp and device.type == "cuda"
                else contextlib.nullcontext())
    last_ckpt = start
    gen = torch.Generator(device)
    monitor, logs = LossMonitor(device), {}
    if progress and main:
        progress.start(start, t.steps)
    tick, tick_step = time.perf_counter(), start
    started, eval_seconds = tick, 0.0
    stop = StopRequest().install()
    try:
        for step in range(start, t.steps):
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
            # a wall-clock budget ends the run like its last step (the clock is host-side, no sync)
            last = done == t.steps or (t.max_seconds > 0
                                       and time.perf_counter() - started - eval_seconds >= t.max_seconds)
            if t.max_seconds > 0 and world_size > 1:
                last = not dist.all_finite(not last)  # every rank stops at the same step
            eval_due = evaluates and done >= t.eval_every and (done % t.eval_every == 0 or last)
            log_due = done % t.log_every == 0 or last or eval_due
            grid_due = done % t.sample_every == 0 or last
            ckpt_due = done % t.checkpoint_every == 0 or last
            interrupted = stop.agreed(done % VOTE_EVERY == 0 or log_due or grid_due or ckpt_due)
            ckpt_due = ckpt_due or interrupted
            if done % VOTE_EVERY == 0 or log_due or grid_due or ckpt_due:  # the same steps on every rank
                bad = monitor.first_bad()
                if bad is not None:
                    kept = (f"the last good checkpoint (step {last_ckpt}) is kept in {run.checkpoints}" if last_ckpt
                            else "no checkpoint had been written yet")
                    raise TrainingDiverged(f"{bad}; stopped, {kept}")
            if log_due:
                logs = monitor.mean()
            quality, improved = {}, False
            if eval_due:
                if main:
                    began = time.perf_counter()
                    evaluator = evaluator or TrainingEval(data, t.eval_samples, device, seed=t.seed)
                    quality = {k: round(v, 6) if isinstance(v, float) else v for k, v in evaluator(model).items()}
                    quality["eval_s"] = round(time.perf_counter() - began, 3)
                    eval_seconds += quality["eval_s"]
                    tick += quality["eval_s"]  # it/s counts training steps only
                    improved = best is None or quality["fid"] < best["fid"]
                    if improved:
                        best = {"step": done, "fid": quality["fid"]}
                improved = dist.broadcast_object(improved)
                ckpt_due = ckpt_due or improved  # the best step's checkpoint is kept besides the newest
                if main and best is not None:
                    quality["best_step"] = best["step"]
            if main and log_due:
                now = time.perf_counter()
                rate = (done - tick_step) / max(now - tick, 1e-9)
                record = {"step": done, "time": round(time.time(), 3), **{k: round(v, 6) for k, v in logs.items()},
                          "it_per_s": round(rate, 3), "samples_per_s": round(rate * t.batch_size * world_size, 1),
                          **quality}
                run.append_stats(record)
                if board:
                    board.log(record)
                if progress and hasattr(progress, "log"):
                    progress.log(record)
                tick, tick_step = now, done
            if main and grid_due:
                grid = _write_grid(model, run, done, data)
                if board and grid is not None:
                    board.image(grid, done)
            if ckpt_due:
                if main:
                    save_checkpoint(run.checkpoints, done, model_states(model),
                                    {"model": model.name, "dataset": cfg.data.dataset,
                                     "data_spec": dataclasses.asdict(model.spec), "batches_read": done * t.d_steps,
                                     "config": {k: v for k, v in cfg.to_dict().items() if k != "out"}},
                                    keep=t.keep_checkpoints, protect=(best["step"],) if best else ())
                    if improved:
                        run.write_best(best)
                last_ckpt = done
                dist.barrier()
            if interrupted and not last:
                raise Interrupted(done, stop.signum or signal.SIGTERM, str(run.path))
            if progress and main:
                progress.update(done, logs)
            if last:
                break
        dist.sync_buffers(model.modules().values())
    finally:
        if data.streamed:
            streamed.close()
        stop.restore()
        if progress and main:
            progress.close()
        if board:
            board.close()
    return run
