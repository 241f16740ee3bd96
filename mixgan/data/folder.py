"""Folders of real images (PNG, JPEG, WebP; any size, any mode), brought to one square size.

Every image goes through :func:`fit_image`: turned as its EXIF orientation says (as a viewer shows
it), its centre square cut out and resized to ``resolution x resolution`` (the crop comes first, so
no intermediate image is larger than the source), converted to 1 (grey) or 3 (RGB) channels,
returned as uint8 C x H x W; 16-bit grey is scaled by its bit depth, transparent pixels are laid
on ``background``. Files that cannot be read (not an image, truncated, a decompression bomb) are
skipped and counted; a folder with nothing readable is an error.

Layout: images directly in the folder (no labels), or one sub-folder per class (labels 0..N-1 in
the sorted order of the sub-folder names), each holding its images directly. Images beside class
folders, and class folders without images, are refused; images in folders below a class folder
are left out with one warning naming them. The building blocks are public for code that reads
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
from .base import Dataset, shown, split

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp")
DEFAULT_RESOLUTION = 64  # where images differ in size or are not square
GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")


def parse_background(value: str) -> tuple[int, int, int]:
    """``data.background`` as an RGB triple: "white", "black", any colour name or "#rrggbb"."""
    from PIL import ImageColor

    try:
        rgb = ImageColor.getrgb(str(value))
    except ValueError:
        raise MixganError(f"data.background must be white, black or a colour like '#808080', got {value!r}") from None
    return tuple(rgb[:3])


def upright(im):
    """``im`` turned as its EXIF orientation tag says (phone photos are stored sideways)."""
    from PIL import ImageOps

    try:
        orientation = im.getexif().get(0x0112, 1)
    except Exception:  # a damaged EXIF block: the pixels as stored
        return im
    return ImageOps.exif_transpose(im) if orientation not in (1, None) else im


def fit_image(im, resolution: int, channels: int, background: str | tuple = "white") -> np.ndarray:
    """A PIL image as uint8 ``channels x resolution x resolution``: the centre square of the region a
    short-side resize to ``resolution`` keeps, resized (bicubic, antialiased when shrinking) straight
    from the source, so memory stays bounded by the source whatever its aspect ratio. 16-bit grey
    maps 0..65535 onto 0..255; transparent pixels are laid on ``background``. An image already of
    that size keeps its pixels."""
    from PIL import Image

    if im.mode not in ("L", "RGB"):
        if im.mode in ("I", "I;16", "I;16B", "I;16L", "F"):  # 16-bit (or float) grey: scale to 8 bits
            a = np.asarray(im, dtype=np.float64)
            top = 255.0 if im.mode == "F" and a.max(initial=0) <= 255 else 65535.0  # the bit depth, not the values
            im = Image.fromarray(np.clip(a * (255.0 / top), 0, 255).round().astype(np.uint8), "L")
        elif im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            colour = background if isinstance(background, tuple) else parse_background(background)
            im = im.convert("RGBA")
            back = Image.new("RGBA", im.size, (*colour, 255))
            im = Image.alpha_composite(back, im).convert("RGB")
        else:
            im = im.convert("RGB")
    im = im.convert("L" if channels == 1 else "RGB")
    w, h = im.size
    if (w, h) != (resolution, resolution):
        scale = resolution / min(w, h)
        size = (max(resolution, round(w * scale)), max(resolution, round(h * scale)))
        left, top = (size[0] - resolution) // 2, (size[1] - resolution) // 2
        sx, sy = size[0] / w, size[1] / h  # the region of the source the centre crop of the resized image shows
        box = (left / sx, top / sy, (left + resolution) / sx, (top + resolution) / sy)
        im = im.resize((resolution, resolution), Image.Resampling.BICUBIC, box=box,
                       reducing_gap=3.0 if scale < 1 else None)
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


def _image_files(d: Path) -> list[Path]:
    return sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_EXTS and p.is_file())


def _visible_dirs(d: Path) -> list[Path]:
    return sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith("."))


def list_images(folder: str | Path) -> Listing:
    """The images of ``folder`` (flat, or one sub-folder per class), sorted by name.

    Refused in one line: images beside class folders (which would be left out) and a class folder
    without images of its own (an empty class). Images in folders below a class folder are left
    out with one :class:`MixganWarning` naming them."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MixganError(f"folder: {shown(folder)} does not exist (set --data-dir)")
    subdirs = _visible_dirs(folder)
    top = _image_files(folder)
    if subdirs and top:
        raise MixganError(f"folder: {shown(folder)} holds {len(top)} image(s) beside the sub-folder(s) "
                          f"{_names([d.name for d in subdirs])}; put images either directly in the folder or "
                          "in one sub-folder per class")
    if subdirs:
        groups = [(i, _image_files(d)) for i, d in enumerate(subdirs)]
        empty = [d for (_, ps), d in zip(groups, subdirs) if not ps]
        if empty:
            raise MixganError(f"folder: class folder(s) {_names([d.name for d in empty])} of {shown(folder)} hold no "
                              "image directly (a class folder holds its images, not sub-folders of them): fill or "
                              "remove them")
        nested = [n for d in subdirs for n in _visible_dirs(d) if _image_files(n)]
        if nested:
            warnings.warn(MixganWarning(f"{shown(folder)}: left out the images in {len(nested)} folder(s) below the "
                                        f"class folders ({_names([str(n.relative_to(folder)) for n in nested])})"),
                          stacklevel=2)
    else:
        groups = [(-1, top)]
    paths = [(label, p) for label, ps in groups for p in ps]
    if not paths:
        raise MixganError(f"folder: {shown(folder)} holds no PNG, JPEG or WebP images")
    return Listing(folder, [p for _, p in paths], [label for label, _ in paths], [d.name for d in subdirs])


def _names(names: list[str], most: int = 3) -> str:
    """The first ``most`` of ``names``, shown safely, and how many more."""
    return ", ".join(shown(n) for n in names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


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
                w, h = im.size
                sizes.append((h, w) if im.getexif().get(0x0112, 1) in (5, 6, 7, 8) else (w, h))  # turned upright
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


def read_images(paths: list[Path], resolution: int, channels: int, batch_size: int = 1024,
                background: str = "white") -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Decoded, fitted images in file order, ``batch_size`` at a time: (uint8 images, the indices
    into ``paths`` they came from). Unreadable files are left out (their index is missing)."""
    errors = _errors()
    colour = parse_background(background)
    batch, index = [], []
    for i, path in enumerate(paths):
        try:
            with _open(path) as im:
                im.load()
                batch.append(fit_image(upright(im), resolution, channels, colour))
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
        warnings.warn(MixganWarning(f"{shown(folder)}: skipped {len(skipped)} unreadable image file(s) "
                                    f"({shown(skipped[0].name)}{more})"), stacklevel=3)


def image_folder(folder: str | Path, seed: int = 0, test_fraction: float = 0.2, resolution: int = 0,
                 channels: int = 0, background: str = "white") -> Dataset:
    """A folder of images as a uint8 Dataset (see the module docstring); ``Dataset.skipped``
    counts the unreadable files, also reported by one :class:`MixganWarning`. Every file of the
    listing enters the fingerprint (name, size, modification time)."""
    listing = list_images(folder)
    sizes, colour = probe_images(listing.paths)
    readable = [p for p, s in zip(listing.paths, sizes) if s is not None]
    if not readable:
        raise MixganError(f"folder: none of the {len(listing.paths)} image files in {shown(listing.folder)} is readable")
    resolution, channels = auto_size(sizes, colour, resolution, channels)
    parts, kept = [], []
    for x, index in read_images(listing.paths, resolution, channels, background=background):
        parts.append(x)
        kept.append(index)
    if not parts:
        raise MixganError(f"folder: none of the {len(listing.paths)} image files in {shown(listing.folder)} is readable")
    kept_index = np.concatenate(kept)
    skipped = sorted(set(range(len(listing.paths))) - set(kept_index.tolist()))
    skipped_warning(listing.folder, [listing.paths[i] for i in skipped])
    x = torch.from_numpy(np.concatenate(parts))
    y = torch.tensor([listing.labels[i] for i in kept_index]) if listing.classes else None
    if len(x) < 2:
        raise MixganError(f"folder: {shown(listing.folder)} has {len(x)} readable image; need at least 2 to hold out a test split")
    x_tr, x_te, y_tr, y_te = split(x, y, test_fraction)
    return Dataset("folder", x_tr, x_te, y_tr, y_te, num_classes=len(listing.classes),
                   files=listing.paths, skipped=len(skipped), variant=variant(channels, resolution, background),
                   class_names=tuple(listing.classes))


def variant(channels: int, resolution: int, background: str = "white") -> str:
    """The fingerprint's note of how a folder's images were fitted (the background only where it is not white)."""
    colour = parse_background(background)
    return f"{channels}x{resolution}x{resolution}" + ("" if colour == (255, 255, 255) else "-on-%02x%02x%02x" % colour)
