"""mixgan sample: draw samples from a trained run into an .npz (and a picture)."""
from __future__ import annotations

import argparse

import numpy as np
import torch

from ..api import load
from ..config import capped
from ..data.npz import read_npz
from ..viz import class_label, save_samples_picture
from .common import add_device_option, write_npz


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("sample", help="draw samples from a run", description="Draw samples from a trained run.")
    p.add_argument("run", help="run directory")
    p.add_argument("--n", type=int, help="number of samples (default 2500, or one per row of --cond)")
    p.add_argument("--out", required=True, help="output .npz (x, and component/label/instance where they apply)")
    p.add_argument("--component", type=int, help="sample only this Gaussian")
    p.add_argument("--scale", type=float, default=1.0, help="multiply every latent scale by S")
    p.add_argument("--class", dest="label", metavar="CLASS",
                   help="class to generate (class-conditional models): its index, or its name where the data "
                        "names its classes (folder names)")
    p.add_argument("--cond", metavar="FILE.npz",
                   help="conditions of a vector-conditioned cgan: array 'c', one row per sample or one for all")
    p.add_argument("--instances", metavar="N|FILE.npz|IMAGE|FOLDER", nargs="+",
                   help="IC-GAN: condition on N k-means representatives of the stored instances, on the "
                        "unseen instances of an .npz (array 'x', optional classes 'y'), or on photos: PNG/JPEG "
                        "files and folders of them, resized and centre-cropped like the training images")
    p.add_argument("--grid", help="also write a PNG of the samples (one row per class where there are classes)")
    p.add_argument("--seed", type=int, default=0)
    add_device_option(p)
    return p


def read_conditions(path: str) -> np.ndarray:
    """Array ``c`` (or ``cond``, as ``mixgan sample`` writes it) of an .npz, never unpickled."""
    from ..errors import MixganError

    arrays = read_npz(path, f"--cond {path}")
    key = next((k for k in ("c", "cond") if k in arrays), None)
    if key is None:
        raise MixganError(f"--cond {path}: no array 'c' in the file")
    return arrays[key]


def class_rows(x: torch.Tensor, labels: torch.Tensor, columns: int = 10) -> tuple[torch.Tensor, int, list[int]]:
    """Up to ``columns`` images of each class present, one row per class, blank-padded; and the classes."""
    rows, classes = [], torch.unique(labels).tolist()
    for y in classes:
        row = x[labels == y][:columns]
        pad = torch.ones(columns - len(row), *x.shape[1:], dtype=x.dtype)
        rows.append(torch.cat([row, pad]))
    return torch.cat(rows), len(rows), classes


def class_index(spec, value: str) -> int:
    """A class given by index ("3") or by name ("cat", from the data's class names)."""
    from ..errors import MixganError

    names = list(spec.class_names)
    if value in names:
        return names.index(value)
    try:
        return int(value)
    except ValueError:
        known = f"one of {', '.join(names)}" if names else "an index (this data names no classes)"
        raise MixganError(f"--class {value}: no such class; give {known}") from None


def check_output(path: str, option: str, suffix: str | None = None) -> None:
    """Refuse, in one line, an output file that could not be written: wrong suffix, a folder, a
    missing folder or one that takes no new file (tried with a temporary file, removed at once)."""
    import tempfile
    from pathlib import Path

    from ..errors import MixganError

    p = Path(path)
    if suffix and p.suffix != suffix:
        raise MixganError(f"{option} {p}: expected a {suffix} file name")
    if p.is_dir():
        raise MixganError(f"{option} {p}: is a folder, not a file")
    if not p.parent.is_dir():
        raise MixganError(f"{option} {p}: folder {p.parent} does not exist")
    try:
        with tempfile.TemporaryFile(dir=p.parent):
            pass
    except OSError as exc:
        raise MixganError(f"{option} {p}: cannot write in {p.parent} ({exc.strerror})") from None


def run(args) -> int:
    from ..errors import MixganError

    import math

    from .common import check_seed

    if not math.isfinite(args.scale) or args.scale <= 0:
        raise MixganError(f"--scale must be a finite number > 0, got {args.scale}")
    check_seed(args.seed)
    check_output(args.out, "--out", ".npz")  # every output checked before any is written
    if args.grid:
        check_output(args.grid, "--grid")
    kwargs = {}
    if args.cond:
        kwargs["cond"] = read_conditions(args.cond)
    n = args.n if args.n is not None else (len(kwargs["cond"]) if args.cond and np.ndim(kwargs["cond"]) == 2 else 2500)
    n = capped(n)
    from ..config import MAX_SAMPLES

    if not 1 <= n <= MAX_SAMPLES:
        raise MixganError(f"--n must be in 1..{MAX_SAMPLES:,}, got {n:,}")
    r = load(args.run, device=args.device)
    if args.cond and not r.model.accepts_condition_vectors:
        raise MixganError(f"--cond: model '{r.model.name}' does not take vector conditions")
    instance_x = None
    if args.instances:
        from .instances import instance_request

        extra, instance_x = instance_request(r.model, args.instances, args.seed)
        kwargs.update(extra)
    label = class_index(r.model.spec, args.label) if args.label is not None else None
    s = r.sample(n, component=args.component, scale=args.scale, label=label, seed=args.seed, **kwargs)
    arrays = s.arrays()
    arrays["x"] = arrays["x"].astype("float32")
    path = write_npz(args.out, arrays)
    print(f"wrote {len(s.x)} samples to {path}")
    if args.grid and r.model.instance_conditional:
        write_instance_picture(r, s, kwargs, instance_x, args)
    elif args.grid:
        colors = s.label if s.label is not None else s.component
        labels = None
        if s.label is not None and s.x.ndim == 4:
            shown, rows, classes = class_rows(s.x, s.label)
            labels = [f"class {class_label(y, r.model.spec.class_names)}" for y in classes]
        elif s.x.ndim == 4:
            shown = s.x[:100]
            rows = max(1, -(-len(shown) // 10))
        else:  # points: a scatter of all of them, coloured by class or component
            shown, rows = s.x, 0
        save_samples_picture(shown, rows, args.grid, colors=colors, reference=None, labels=labels)
        print(f"wrote {args.grid}")
    return 0


def write_instance_picture(r, s, kwargs, instance_x, args) -> None:
    """Images: each conditioning instance, then its samples; points: samples coloured by instance."""
    from ..errors import MixganError
    from .instances import instance_grid

    if s.x.ndim == 4:
        train_x = None
        if "conditions" not in kwargs:
            try:
                train_x = r.data.images()
            except MixganError:
                train_x = None  # the training set is not here: samples only
        shown, rows, left_out = instance_grid(r.model, s, kwargs, instance_x, train_x)
        save_samples_picture(shown, rows, args.grid)
        if left_out:
            print(f"grid: the first {rows} instances shown, {left_out} left out")
    else:
        save_samples_picture(s.x, 0, args.grid, colors=s.instance % 20, reference=instance_x)
    print(f"wrote {args.grid}")
