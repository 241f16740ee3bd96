"""Photos as instances: image files read, resized on their short side and centre-cropped to a
model's image size, as uint8 N x C x H x W."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from ..errors import MixganError

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def fit_image(im, height: int, width: int, channels: int) -> np.ndarray:
    """A PIL image scaled (bicubic) so that it covers height x width, centre-cropped to it, in
    grey (1 channel) or RGB (3): a C x H x W uint8 array."""
    from PIL import Image

    im = im.convert("L" if channels == 1 else "RGB")
    w, h = im.size
    scale = max(height / h, width / w)
    size = (max(width, round(w * scale)), max(height, round(h * scale)))
    if size != (w, h):
        im = im.resize(size, Image.Resampling.BICUBIC)
    left, top = (size[0] - width) // 2, (size[1] - height) // 2
    arr = np.asarray(im.crop((left, top, left + width, top + height)), dtype=np.uint8)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def image_paths(items: Iterable[str | Path]) -> list[Path]:
    """The image files named: files as given, folders as their image files sorted by name."""
    paths: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTS)
            if not found:
                raise MixganError(f"{p}: no image files ({', '.join(IMAGE_EXTS)}) in the folder")
            paths.extend(found)
        elif p.is_file():
            paths.append(p)
        else:
            raise MixganError(f"{p}: no such file or folder")
    if not paths:
        raise MixganError("no image files given")
    return paths


def read_images(paths: Sequence[str | Path], shape: Sequence[int]) -> torch.Tensor:
    """The images at ``paths`` fitted to ``shape`` (C, H, W): uint8 N x C x H x W. A file that
    cannot be read as an image is named in a one-line error."""
    from PIL import Image, UnidentifiedImageError

    c, h, w = shape
    out = []
    for path in paths:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(path) as im:
                    im.load()
                    out.append(fit_image(im, h, w, c))
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError,
                Image.DecompressionBombWarning) as exc:
            reason = " ".join(str(exc).split())
            raise MixganError(f"{path}: not a readable image ({reason})") from None
    return torch.from_numpy(np.stack(out))


def as_images(value, shape: Sequence[int]) -> torch.Tensor | None:
    """Instances given as images, as float32 N x C x H x W in [-1, 1] fitted to ``shape``; None
    where ``value`` is not images (instance indices).

    Images are a list of paths (files or folders), a uint8 array N x C x H x W of any size
    (fitted like files) or a float array in [-1, 1] of exactly ``shape``."""
    from PIL import Image

    from ..embeddings.store import as_float_images

    if isinstance(value, (str, Path)):
        value = [value]
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, (str, Path)) for v in value):
        return as_float_images(read_images(image_paths(value), shape))
    if isinstance(value, (list, tuple)) or not hasattr(value, "ndim") or value.ndim != 1 + len(shape):
        return None
    x = torch.as_tensor(np.asarray(value) if not isinstance(value, torch.Tensor) else value)
    if x.dtype == torch.uint8 and len(shape) == 3 and tuple(x.shape[1:]) != tuple(shape):
        if x.shape[1] not in (1, 3):
            raise MixganError(f"instance images must be N x C x H x W with 1 or 3 channels, got shape {tuple(x.shape)}")
        arrs = [a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0) for a in x.cpu().numpy()]
        x = torch.from_numpy(np.stack([fit_image(Image.fromarray(a), shape[1], shape[2], shape[0]) for a in arrs]))
    return as_float_images(x)
