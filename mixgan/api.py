"""The Python entry points: ``mixgan.train(config)`` and ``mixgan.load(run_dir)``."""
from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from .config import Config, apply_env_caps, build_config
from .data import DataSpec, Dataset, configured_dataset
from .errors import MixganError
from .models import GANModel, Samples, build_model
from .training import RunDir, restore
from .training import train as _train
from .training.loop import trained_steps
from .training.checkpoint import checkpoint_step, latest_checkpoint, list_checkpoints, read_checkpoint
from .training.dist import resolve_device


class Run:
    """A trained run: its config, model (weights of the newest checkpoint) and data on demand."""

    def __init__(self, path: Path, cfg: Config, model: GANModel, step: int):
        self.path, self.cfg, self.model, self.step = path, cfg, model, step
        self.dir = RunDir(path)
        self._gaussian_classifier = None  # trained by the first cluster() call

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, model={self.cfg.model.name!r}, dataset={self.cfg.data.dataset!r}, step={self.step})"

    @cached_property
    def data(self) -> Dataset:
        return configured_dataset(self.cfg.data, self.cfg.train.seed)

    def sample(self, n: int, component: int | None = None, scale: float = 1.0, label: int | None = None,
               seed: int = 0, **kwargs: Any) -> Samples:
        """n samples; optionally from one Gaussian component, one class, with every scale times s.

        IC-GAN: given ``instances`` (stored indices, or images) or ``conditions``, the n samples are
        spread evenly over them, in their order: each gets floor(n/M) or ceil(n/M) (the first
        n mod M one more); ``Samples.instance`` says which (a stored index, or a row of the
        images/conditions). ``per_instance`` asks for exactly that many each instead.
        """
        gen = torch.Generator(self.model.device).manual_seed(seed)
        instanced = getattr(self.model, "instance_conditional", False)
        if instanced and kwargs.get("per_instance") is None and (kwargs.get("instances") is not None
                                                   or kwargs.get("conditions") is not None):
            kwargs, rows = self._evenly(n, kwargs)
            s = self.model.sample(0, component=component, scale=scale, label=label, generator=gen, **kwargs)
            if rows is not None:  # rows of the given images/conditions, not of the repeated ones
                s.instance = rows[s.instance.long()]
            return s
        return self.model.sample(n, component=component, scale=scale, label=label, generator=gen, **kwargs)

    def _evenly(self, n: int, kwargs: dict) -> tuple[dict, torch.Tensor | None]:
        """Sampling arguments that give each given instance floor(n/M) or ceil(n/M) samples, in
        order (``per_instance=1`` over the repeated pool), and the map from a sample's pool row
        back to the given row (None where the pool holds stored indices, which say it themselves)."""
        from .data.photos import as_images

        if n < 1:
            raise MixganError(f"the number of samples must be >= 1, got {n}")
        kwargs = dict(kwargs)
        model = self.model
        images = None if kwargs.get("instances") is None else as_images(kwargs["instances"], model.shape)
        if images is not None:
            if kwargs.get("conditions") is not None:
                raise MixganError("give instances as images or as conditions, not both")
            kwargs["conditions"] = model.embed_instances(images)
            del kwargs["instances"]
        if kwargs.get("conditions") is not None:
            pool = torch.as_tensor(kwargs["conditions"])
        else:
            pool = torch.as_tensor(kwargs["instances"]).long().flatten().cpu()
        m = len(pool)
        if m == 0:
            raise MixganError("no instances given to condition on")
        counts = torch.full((m,), n // m, dtype=torch.long)
        counts[: n % m] += 1
        rows = torch.arange(m).repeat_interleave(counts)
        kwargs["per_instance"] = 1
        if kwargs.get("conditions") is None:
            kwargs["instances"] = pool[rows]
            return kwargs, None
        kwargs["conditions"] = pool[rows.to(pool.device)]
        if kwargs.get("condition_labels") is not None:
            labels = torch.as_tensor(kwargs["condition_labels"]).long().flatten()
            if len(labels) != m:
                raise MixganError(f"{m} instances but {len(labels)} labels")
            kwargs["condition_labels"] = labels[rows.to(labels.device)]
        return kwargs, rows

    def cluster(self, images: torch.Tensor, method: str | None = None, device: str | torch.device | None = None,
                **kwargs: Any):
        """The Gaussian each image (or point) belongs to: by the run's encoder where it has one,
        else by a classifier trained on (G(z_k), k); ``method`` ('encoder' or 'classifier') chooses.

        The classifier is trained on ``device`` (default: the model's) on the first call and kept
        for later ones; ``kwargs`` go to :func:`mixgan.analysis.cluster.gaussian_classifier`
        (``per_component``, ``epochs``, ``seed``).
        """
        from .analysis.cluster import gaussian_assigner, resolve_method

        if resolve_method(self.model, method) == "encoder":
            return gaussian_assigner(self.model, "encoder")(images)
        if self._gaussian_classifier is None or kwargs or device is not None:
            dev = None if device is None else resolve_device(device)
            self._gaussian_classifier = gaussian_assigner(self.model, "classifier", device=dev, **kwargs)
        return self._gaussian_classifier(images)


def train(config: Config | dict | str | Path, resume: bool = False, progress=None,
          accept_changed_data: bool = False) -> Run:
    """Train from a Config, a dict of settings (``{"model.name": "gmgan", ...}``) or a TOML path.

    SIGINT or SIGTERM during training finishes the step, saves a checkpoint and raises
    :class:`mixgan.errors.Interrupted`; continue with ``resume=True`` (the same Config, or
    ``training.resume_config(run_dir, changes)``). A resume is refused where the settings fixed by
    the run or its training data changed; ``accept_changed_data=True`` accepts changed data."""
    if isinstance(config, (str, Path)):
        config = build_config(config_file=config)
    elif isinstance(config, dict):
        config = build_config(values=config)
    apply_env_caps(config, trained_steps(config.out) if resume and config.out else 0)
    run_dir = _train(config, resume=resume, progress=progress, accept_changed_data=accept_changed_data)
    return load(run_dir.path, device=config.train.device)


def load(run_dir: str | Path, device: str | torch.device = "auto", step: int | None = None) -> Run:
    """Open a run directory at its newest checkpoint, or at ``step`` (any kept one: the newest
    ``train.keep_checkpoints`` and the best by FID, ``RunDir.read_best()``), the model on ``device``
    (auto: the GPU where there is one, as ``mixgan.train``)."""
    path = Path(run_dir)
    cfg = RunDir(path).config()
    folder = RunDir(path).checkpoints
    if step is not None:
        kept = list_checkpoints(folder)
        match = [p for p in kept if checkpoint_step(p) == step]
        if not match:
            steps = ", ".join(str(checkpoint_step(p)) for p in kept) or "none"
            raise MixganError(f"{path}: no checkpoint for step {step} (kept: {steps})")
        found = read_checkpoint(match[0])
    else:
        found = latest_checkpoint(folder)
    if found is None:
        raise MixganError(f"{path}: no checkpoint yet (has training reached its first checkpoint?)")
    states, record = found
    if "data_spec" not in record:
        raise MixganError(f"{path}: checkpoint lacks its data description")
    spec = DataSpec.from_dict(record["data_spec"])
    model = build_model(cfg, spec, resolve_device(device))
    restore(model, states, record, optimizers=False)
    model.open_run(path)
    return Run(path, cfg, model, record["step"])
