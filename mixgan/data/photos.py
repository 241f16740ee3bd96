"""Photos as instances: image files read upright (EXIF orientation), resized on their short side
and centre-cropped to a model's image size (:func:`mixgan.data.folder.fit_image`, the training images' path), as uint8
N x C x H x W."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from ..errors import MixganError
from .base import shown
from .folder import IMAGE_EXTS, _errors, _open, fit_array, fit_image, upright


def image_paths(items: Iterable[str | Path]) -> list[Path]:
    """The image files named: files as given, folders as their image files sorted by name."""
    paths: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTS)
            if not found:
                raise MixganError(f"{shown(p)}: no image files ({', '.join(IMAGE_EXTS)}) in the folder")
            paths.extend(found)
        elif p.is_file():
            paths.append(p)
        else:
            raise MixganError(f"{shown(p)}: no such file or folder")
    if not paths:
        raise MixganError("no image files given")
    return paths


def read_images(paths: Sequence[str | Path], shape: Sequence[int]) -> torch.Tensor:
    """The images at ``paths`` fitted to ``shape`` (C, H, W with H = W): uint8 N x C x H x W. A
    file that cannot be read as an image is named in a one-line error."""
    c, h, w = shape
    if h != w:
        raise MixganError(f"photos are fitted to square images, not {h} x {w}")
    out = []
    for path in paths:
        try:
            with _open(Path(path)) as im:
                im.load()
                out.append(fit_image(upright(im), h, c))
        except _errors() as exc:
            reason = " ".join(str(exc).split())
            raise MixganError(f"{shown(path)}: not a readable image ({reason})") from None
    return torch.from_numpy(np.stack(out))


def as_images(value, shape: Sequence[int]) -> torch.Tensor | None:
    """Instances given as images, as float32 N x C x H x W in [-1, 1] fitted to ``shape``; None
    where ``value`` is not images (instance indices).

    Images are a list of paths (files or folders), a uint8 array N x C x H x W of any size
    (fitted like files) or a float array in [-1, 1] of exactly ``shape``."""
    from ..embeddings.store import as_float_images

    if isinstance(value, (str, Path)):
        value = [value]
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, (str, Path)) for v in value):
        return as_float_images(read_images(image_paths(value), shape))
    if isinstance(value, (list, tuple)) or not hasattr(value, "ndim") or value.ndim != 1 + len(shape):
        return None
    x = torch.as_tensor(np.asarray(value) if not isinstance(value, torch.Tensor) else value)
    if x.dtype == torch.uint8 and len(shape) == 3 and tuple(x.shape[1:]) != tuple(shape):
        if x.shape[1] not in (1, 3) or shape[1] != shape[2]:
            raise MixganError(f"instance images must be N x C x H x W with 1 or 3 channels, got shape {tuple(x.shape)}")
        x = torch.from_numpy(fit_array(x.cpu().numpy(), shape[1], shape[0]))
    return as_float_images(x)
