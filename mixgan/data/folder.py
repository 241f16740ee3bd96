"""Folders of real images (PNG, JPEG, WebP; any size, any mode), brought to one square size.

Every image goes through :func:`fit_image`: resized so its short side is ``resolution``, centre-
cropped to ``resolution x resolution``, converted to 1 (grey) or 3 (RGB) channels, returned as
uint8 C x H x W. Files that cannot be read (not an image, truncated, a decompression bomb) are
skipped and counted; a folder with nothing readable is an error.

Layout: images directly in the folder (no labels), or one sub-folder per class (labels 0..N-1 in
the sorted order of the sub-folder names). The building blocks are public for code that reads
images in other ways: :func:`list_images`, :func:`probe_images` (sizes and colour from the file
headers), :func:`auto_size`, :func:`read_images` (decoded, fitted batches in file order).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from ..errors import MixganError, MixganWarning
from .base import Dataset, split

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp")
DEFAULT_RESOLUTION = 64  # where images differ in size or are not square
GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")


def fit_image(im, resolution: int, channels: int) -> np.ndarray:
    """A PIL image as uint8 ``channels x resolution x resolution``: short side resized to
    ``resolution`` (bicubic, antialiased when shrinking), then the centre square cut out.
    An image already of that size keeps its pixels."""
    from PIL import Image

    if im.mode not in ("L", "RGB"):
        if im.mode in ("I", "I;16", "I;16B", "I;16L", "F"):  # 16-bit / float grey: scale to 8 bits
            a = np.asarray(im, dtype=np.float64)
            top = 65535.0 if a.max(initial=0) > 255 else 255.0
            im = Image.fromarray(np.clip(a * (255.0 / top), 0, 255).round().astype(np.uint8), "L")
        elif im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            im = im.convert("RGBA")
            back = Image.new("RGBA", im.size, (255, 255, 255, 255))  # transparent pixels on white
            im = Image.alpha_composite(back, im).convert("RGB")
        else:
            im = im.convert("RGB")
    im = im.convert("L" if channels == 1 else "RGB")
    w, h = im.size
    if (w, h) != (resolution, resolution):
        scale = resolution / min(w, h)
        size = (max(resolution, round(w * scale)), max(resolution, round(h * scale)))
        im = im.resize(size, Image.Resampling.BICUBIC, reducing_gap=3.0 if scale < 1 else None)
        left, top = (size[0] - resolution) // 2, (size[1] - resolution) // 2
        im = im.crop((left, top, left + resolution, top + resolution))
    a = np.asarray(im, dtype=np.uint8)
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def fit_array(x: np.ndarray | torch.Tensor, resolution: int, channels: int) -> np.ndarray:
    """uint8 N x C x H x W images through :func:`fit_image` (the other datasets' resize path)."""
    from PIL import Image

    x = np.asarray(x, dtype=np.uint8)
    if x.shape[1:] == (channels, resolution, resolution):
        return x
    out = np.empty((len(x), channels, resolution, resolution), np.uint8)
    for i, img in enumerate(x):
        im = Image.fromarray(img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0))
        out[i] = fit_image(im, resolution, channels)
    return out


@dataclass
class Listing:
    """The image files of a folder, in order, with their class (-1: no class sub-folders)."""

    folder: Path
    paths: list[Path]
    labels: list[int]
    classes: list[str] = field(default_factory=list)


def list_images(folder: str | Path) -> Listing:
    """The images of ``folder`` (flat, or one sub-folder per class), sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MixganError(f"folder: {folder} does not exist (set --data-dir)")
    subdirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))

    def images(d: Path) -> list[Path]:
        return sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_EXTS and p.is_file())

    if subdirs:
        groups = [(i, images(d)) for i, d in enumerate(subdirs)]
    else:
        groups = [(-1, images(folder))]
    paths = [(label, p) for label, ps in groups for p in ps]
    if not paths:
        raise MixganError(f"folder: {folder} holds no PNG, JPEG or WebP images")
    return Listing(folder, [p for _, p in paths], [label for label, _ in paths], [d.name for d in subdirs])


def _open(path: Path):
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)  # a header claiming huge sizes
        return Image.open(path)


_READ_ERRORS: tuple = (OSError, SyntaxError, ValueError, EOFError, MemoryError)


def _errors() -> tuple:
    from PIL import Image, UnidentifiedImageError

    return _READ_ERRORS + (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning)


def probe_images(paths: list[Path]) -> tuple[list[tuple[int, int] | None], bool]:
    """Each file's (width, height) from its header (None: unreadable), and whether any is in colour."""
    sizes, colour, errors = [], False, _errors()
    for path in paths:
        try:
            with _open(path) as im:
                sizes.append(im.size)
                colour = colour or im.mode not in GREY_MODES
        except errors:
            sizes.append(None)
    return sizes, colour


def auto_size(sizes: list[tuple[int, int] | None], colour: bool, resolution: int = 0,
              channels: int = 0) -> tuple[int, int]:
    """(resolution, channels) with 0 = automatic: the images' own side where all share one square
    size (else :data:`DEFAULT_RESOLUTION`); 3 channels where any image has colour (else 1)."""
    if not resolution:
        found = {s for s in sizes if s is not None}
        (w, h), = found if len(found) == 1 else {(0, 1)}
        resolution = w if w == h else DEFAULT_RESOLUTION
    return resolution, channels or (3 if colour else 1)


def read_images(paths: list[Path], resolution: int, channels: int, batch_size: int = 1024
                ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Decoded, fitted images in file order, ``batch_size`` at a time: (uint8 images, the indices
    into ``paths`` they came from). Unreadable files are left out (their index is missing)."""
    errors = _errors()
    batch, index = [], []
    for i, path in enumerate(paths):
        try:
            with _open(path) as im:
                im.load()
                batch.append(fit_image(im, resolution, channels))
                index.append(i)
        except errors:
            continue
        if len(batch) == batch_size:
            yield np.stack(batch), np.asarray(index, np.int64)
            batch, index = [], []
    if batch:
        yield np.stack(batch), np.asarray(index, np.int64)


def skipped_warning(folder: Path, skipped: list[Path]) -> None:
    """One warning for all unreadable files of a folder (the CLI prints it as one line)."""
    if skipped:
        more = f" and {len(skipped) - 1} more" if len(skipped) > 1 else ""
        warnings.warn(MixganWarning(f"{folder}: skipped {len(skipped)} unreadable image file(s) "
                                    f"({skipped[0].name}{more})"), stacklevel=3)


def image_folder(folder: str | Path, seed: int = 0, test_fraction: float = 0.2, resolution: int = 0,
                 channels: int = 0) -> Dataset:
    """A folder of images as a uint8 Dataset (see the module docstring); ``Dataset.skipped``
    counts the unreadable files, also reported by one :class:`MixganWarning`."""
    listing = list_images(folder)
    sizes, colour = probe_images(listing.paths)
    readable = [p for p, s in zip(listing.paths, sizes) if s is not None]
    if not readable:
        raise MixganError(f"folder: none of the {len(listing.paths)} image files in {listing.folder} is readable")
    resolution, channels = auto_size(sizes, colour, resolution, channels)
    parts, kept = [], []
    for x, index in read_images(listing.paths, resolution, channels):
        parts.append(x)
        kept.append(index)
    if not parts:
        raise MixganError(f"folder: none of the {len(listing.paths)} image files in {listing.folder} is readable")
    kept_index = np.concatenate(kept)
    skipped = sorted(set(range(len(listing.paths))) - set(kept_index.tolist()))
    skipped_warning(listing.folder, [listing.paths[i] for i in skipped])
    x = torch.from_numpy(np.concatenate(parts))
    y = torch.tensor([listing.labels[i] for i in kept_index]) if listing.classes else None
    if len(x) < 2:
        raise MixganError(f"folder: {listing.folder} has {len(x)} readable image; need at least 2 to hold out a test split")
    x_tr, x_te, y_tr, y_te = split(x, y, test_fraction, seed)
    return Dataset("folder", x_tr, x_te, y_tr, y_te, num_classes=len(listing.classes),
                   files=listing.paths[:256], skipped=len(skipped), variant=f"{channels}x{resolution}x{resolution}",
                   class_names=tuple(listing.classes))
