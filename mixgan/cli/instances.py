"""``mixgan sample --instances``: choosing the IC-GAN instances to condition on, and their picture."""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import MixganError


def read_instances_npz(path: str | Path) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Arrays ``x`` (instances) and, if present, ``y`` (their classes) of an .npz, never unpickled."""
    import numpy as np

    from ..data.npz import read_npz

    arrays = read_npz(path, f"--instances {path}")
    if "x" not in arrays:
        raise MixganError(f"--instances {path}: no array 'x' in the file")
    try:
        x = torch.from_numpy(np.asarray(arrays["x"], dtype=np.float32))
        y = torch.from_numpy(np.asarray(arrays["y"]).astype(np.int64)) if "y" in arrays else None
    except (TypeError, ValueError) as exc:
        raise MixganError(f"--instances {path}: cannot read it ({exc})") from None
    return x, y


def instance_request(model, value, seed: int = 0) -> tuple[dict, torch.Tensor | None]:
    """Sampling arguments for ``--instances``: a count (that many k-means representatives of the
    stored instances), an .npz of unseen instances, or image files and folders (resized and
    centre-cropped to the model's images, as training data is); with the instances' own images
    where known (the unseen ones), for pictures."""
    from ..data.photos import image_paths, read_images
    from ..embeddings.store import as_float_images

    if not model.instance_conditional:
        raise MixganError(f"--instances: model '{model.name}' is not instance-conditioned")
    values = [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]
    if len(values) == 1 and values[0].isdigit():
        return {"instances": model.representatives(int(values[0]), seed=seed)}, None
    if len(values) == 1 and values[0].lstrip("-").isdigit():
        raise MixganError(f"--instances must be a positive count, an .npz file or images, got {values[0]}")
    if len(values) == 1 and values[0].lower().endswith(".npz"):
        x, y = read_instances_npz(values[0])
        return {"conditions": model.embed_instances(x), "condition_labels": y}, x
    if len(model.shape) != 3:
        raise MixganError(f"--instances: image files need a model trained on images, not on '{model.spec.name}'")
    x = as_float_images(read_images(image_paths(values), model.shape))
    return {"conditions": model.embed_instances(x)}, x


MAX_GRID_ROWS = 100  # instances drawn in a --grid picture; the command says how many it left out


def instance_grid(model, samples, kwargs: dict, real: torch.Tensor | None, train_x: torch.Tensor | None,
                  per: int = 9, max_rows: int | None = None) -> tuple[torch.Tensor, int, int]:
    """Images for a grid with one row per conditioning instance, in the order given: the instance
    (where its image is known), then up to ``per`` of its ``samples`` (blank where it has fewer).
    Returns (images, rows, instances left out beyond ``max_rows``, default :data:`MAX_GRID_ROWS`)."""
    max_rows = max_rows or MAX_GRID_ROWS
    if "conditions" in kwargs:
        ids = torch.arange(len(kwargs["conditions"]))
        known = real
    else:  # stored instances: those given, or (none given) those drawn, in the order first drawn
        given = kwargs.get("instances")
        if given is None:
            drawn = samples.instance.long().cpu().tolist()
            ids = torch.tensor(list(dict.fromkeys(drawn)), dtype=torch.long)
        else:
            ids = torch.as_tensor(given).long().flatten().cpu()
        known = train_x[ids] if train_x is not None else None
    shown_ids = ids[:max_rows]
    instance = samples.instance.long().cpu()
    counts = [int((instance == i).sum()) for i in shown_ids.tolist()]
    columns = max(1, min(per, max(counts)))
    blank = torch.ones(1, *model.shape)
    cells = []
    for r, i in enumerate(shown_ids.tolist()):
        if known is not None:
            cells.append(known[r: r + 1].float())
        mine = samples.x[instance == i][:columns].float()
        cells += [mine, blank.expand(columns - len(mine), *model.shape)]
    return torch.cat(cells), len(shown_ids), len(ids) - len(shown_ids)
