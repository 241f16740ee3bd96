"""The shape a dataset's items will have, found without loading the data: the fixed shape of a
known dataset, a folder's image headers, a shard manifest, an .npz member's header. ``train
--dry-run`` shows it, and a run checks it before it starts."""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from ..errors import MixganError

# datasets whose items always have one shape (channels x side x side, or the points' dimension)
FIXED: dict[str, tuple[int, ...]] = {"ring": (2,), "grid": (2,), "digits": (1, 8, 8), "fashion-mnist": (1, 28, 28),
                                     "mnist": (1, 28, 28), "cifar10": (3, 32, 32)}


def _npz_shape(path: Path) -> tuple[int, ...]:
    """The shape of an .npz's ``x`` from its header alone (no array is read)."""
    source = f"npz dataset {path}"
    try:
        with zipfile.ZipFile(path) as z, z.open("x.npy") as f:
            version = np.lib.format.read_magic(f)
            shape = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                     else np.lib.format.read_array_header_2_0)(f)[0]
    except FileNotFoundError:
        raise MixganError(f"{source}: file not found") from None
    except KeyError:
        raise MixganError(f"{source}: no array 'x' (targets)") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise MixganError(f"{source}: not a .npz file ({exc})") from None
    if len(shape) == 3:
        shape = (shape[0], 1, *shape[1:])
    if len(shape) not in (2, 4):
        raise MixganError(f"{source} x: x must be N x D vectors or N x C x H x W images, got shape {shape}")
    return tuple(int(s) for s in shape[1:])


def peek_shape(name: str, data_dir: str = "", resolution: int = 0, channels: int = 0) -> tuple[tuple[int, ...], str]:
    """(the shape of one item as the model will see it, where that came from) for dataset ``name``
    with ``data.resolution``/``data.channels`` (0: as the data comes)."""
    from . import DEFAULT_DIRS
    from .folder import auto_size, list_images, probe_images

    prefix, _, rest = str(name).partition(":")
    if name in FIXED:
        folder = data_dir or DEFAULT_DIRS.get(name, "")
        if name in DEFAULT_DIRS and not folder:
            raise MixganError(f"dataset '{name}' needs --data-dir")
        if folder and name in DEFAULT_DIRS and not Path(folder).is_dir():
            raise MixganError(f"{name}: data folder {folder} does not exist (set --data-dir)")
        shape = FIXED[name]
        how = f"{name}: " + (f"{'x'.join(map(str, shape))} images" if len(shape) == 3 else f"{shape[0]}-D points")
    elif name == "folder":
        if not data_dir:
            raise MixganError("dataset 'folder' needs --data-dir")
        listing = list_images(data_dir)
        sizes, colour = probe_images(listing.paths)
        if not any(sizes):
            raise MixganError(f"folder: none of the {len(listing.paths)} image files in {listing.folder} is readable")
        side, c = auto_size(sizes, colour, resolution, channels)
        return (c, side, side), f"from the headers of {len(listing.paths)} images in {listing.folder}"
    elif prefix == "shards" and rest:
        from .shards import read_manifest

        shape = tuple(int(s) for s in read_manifest(Path(rest).expanduser())["shape"])
        if resolution and resolution != shape[1]:
            raise MixganError(f"{rest}: shards hold {shape[1]} px images, data.resolution is {resolution}; "
                              f"pack them again with --resolution {resolution}")
        how = f"the shard manifest's {'x'.join(map(str, shape))}"
    elif prefix == "npz" and rest:
        shape = _npz_shape(Path(rest).expanduser())
        how = f"the header of {rest}'s x: {'x'.join(map(str, shape))}"
    else:
        from ..config import dataset_error

        raise MixganError(dataset_error(name))
    if len(shape) != 3:
        return shape, how
    c, h, w = shape
    return (channels or c, resolution or h, resolution or w), how


def peek_classes(name: str, data_dir: str = "") -> int:
    """The number of classes dataset ``name`` will have, where it is known without loading the
    data (a known dataset, a folder's class sub-folders, a shard manifest); 0 where it is not."""
    from .folder import list_images

    prefix, _, rest = str(name).partition(":")
    if name in ("digits", "fashion-mnist", "mnist", "cifar10"):
        return 10
    if name == "folder" and data_dir:
        return len(list_images(data_dir).classes)
    if prefix == "shards" and rest:
        from .shards import read_manifest

        return len(read_manifest(Path(rest).expanduser()).get("classes") or [])
    return 0
