"""mixgan train: train a model into a run directory, or --resume one."""
from __future__ import annotations

import argparse

from ..api import train as train_run
from ..config import apply_env_caps, build_config, parse_override, validate
from ..errors import MixganError
from ..models import MODELS
from ..training import resume_config
from ..training.loop import check_start, settings_from_data, trained_steps
from ..training.dist import launch_rank
from .common import add_device_option, check_out_path, describe_config, recipe_line, training_progress

# flag -> setting
FLAGS = {"model": "model.name", "dataset": "data.dataset", "data_dir": "data.data_dir",
         "components": "prior.components", "steps": "train.steps", "batch_size": "train.batch_size",
         "seed": "train.seed", "device": "train.device", "out": "out", "recipe": "recipe"}


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("train", help="train a model", description="Train a model into a run directory.")
    p.add_argument("--model", help=f"one of {', '.join(MODELS)} (default gmgan)")
    p.add_argument("--dataset", help="ring, grid, digits, fashion-mnist, mnist, cifar10, folder (with --data-dir), npz:PATH, "
                   "shards:DIR (from `mixgan data pack`) (default digits)")
    p.add_argument("--data-dir", help="folder of the dataset's files")
    p.add_argument("--components", type=int, help="number of Gaussians K")
    p.add_argument("--steps", type=int, help="generator updates")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--seed", type=int)
    add_device_option(p, default=None)  # None: the config's train.device (auto)
    p.add_argument("--out", help="run directory (default runs/<model>-<dataset>-<time>)")
    p.add_argument("--recipe", help="recipe name (`mixgan recipes` lists them; FAMILY-MODEL for any model) or .toml "
                   "path (default: chosen by dataset and model)")
    p.add_argument("--config", help="TOML file of settings, applied over the recipe")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any setting, e.g. --set sigma=0.5 --set train.lr_g=1e-4")
    p.add_argument("--resume", action="store_true", help="continue --out RUN from its last checkpoint")
    p.add_argument("--accept-changed-data", action="store_true",
                   help="with --resume: continue even though the run's training data changed since its checkpoint")
    p.add_argument("--tensorboard", action="store_true", help="also write TensorBoard event files")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--dry-run", action="store_true",
                   help="check the settings, output folder and data as a run does, print the resolved settings and "
                        "where each came from, then exit without training")
    return p


def resolve(args) -> tuple:
    given = {FLAGS[k]: v for k, v in vars(args).items() if k in FLAGS and v is not None}
    if args.tensorboard:
        given["train.tensorboard"] = True
    if not args.resume:
        return build_config(values=given, config_file=args.config, overrides=args.set,
                            values_source="command line"), False
    if not args.out:
        raise MixganError("--resume needs --out RUN naming the run to continue")
    if args.config:
        raise MixganError("--resume takes its settings from the run; pass changes with --set or flags")
    return resume_config(args.out, list(given.items()) + [parse_override(o) for o in args.set]), True


def check_run(cfg, resume: bool) -> dict[str, tuple[object, str]]:
    """What a run checks before it starts, and so what ``--dry-run`` checks: the settings, the
    output folder (new and empty, or on ``--resume`` not past ``train.steps``), the data's shape
    (found without loading the data) and the networks for it. Returns the data settings left
    automatic (0) -> (the value the data gives, how it was found)."""
    from ..data.peek import peek_classes, peek_shape
    from ..nets import resolve_arch

    validate(cfg)
    if cfg.out and launch_rank() == 0:  # under torchrun, rank 0 makes the folder the others then find
        check_out_path(cfg.out)
        check_start(cfg, resume)
    d = cfg.data
    shape, how = peek_shape(d.dataset, d.data_dir, d.resolution, d.channels)
    resolve_arch(cfg.model.arch, shape)
    if not resume:
        settings_from_data(cfg, shape, peek_classes(d.dataset, d.data_dir))
    values = {"data.resolution": shape[1], "data.channels": shape[0]} if len(shape) == 3 else {}
    return {key: (values.get(key, 0), f"auto: {how}" + ("" if values else " (not images: unused)"))
            for key in ("data.resolution", "data.channels") if not getattr(d, key.split(".")[1])}


def run(args) -> int:
    cfg, resume = resolve(args)
    apply_env_caps(cfg, trained_steps(cfg.out) if resume else 0)
    auto = check_run(cfg, resume)
    if args.dry_run:
        print(describe_config(cfg, auto))
        return 0
    if launch_rank() == 0:
        print(recipe_line(cfg))
    progress = training_progress(f"{cfg.model.name} {cfg.data.dataset}", args.quiet)
    result = train_run(cfg, resume=resume, progress=progress, accept_changed_data=args.accept_changed_data)
    if launch_rank() != 0:  # under torchrun, rank 0 alone reports
        return 0
    print(f"run: {result.path}")
    print(f"samples: {result.path / 'samples'}")
    print(f"steps: {result.step}")
    return 0
