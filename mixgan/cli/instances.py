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


def instance_grid(model, kwargs: dict, real: torch.Tensor | None, train_x: torch.Tensor | None,
                  seed: int = 0, rows: int = 10, per: int = 9) -> tuple[torch.Tensor, int, torch.Tensor]:
    """Images for a grid with one row per conditioning instance: the instance (when its data is
    known), then ``per`` samples. Returns (images, rows, the pool entries shown)."""
    if "conditions" in kwargs:
        size = len(kwargs["conditions"])
        chosen = torch.arange(min(rows, size))
        sub = {"conditions": kwargs["conditions"][chosen]}
        if kwargs.get("condition_labels") is not None:
            sub["condition_labels"] = kwargs["condition_labels"][chosen]
        shown = real[chosen] if real is not None else None
    else:
        pool = kwargs.get("instances")
        pool = torch.arange(model.instances) if pool is None else torch.as_tensor(pool).long().cpu()
        chosen = pool[torch.linspace(0, len(pool) - 1, min(rows, len(pool))).round().long()]
        sub = {"instances": chosen}
        shown = train_x[chosen] if train_x is not None else None
    gen = torch.Generator(model.device).manual_seed(seed)
    s = model.sample(0, generator=gen, per_instance=per, **sub)
    n_rows = len(chosen)
    x = s.x.view(n_rows, per, *model.shape)
    if shown is not None:
        x = torch.cat([shown.float().view(n_rows, 1, *model.shape), x], 1)
    return x.flatten(0, 1), n_rows, s.instance
