"""Image datasets from disk: scikit-learn's digits, CIFAR-10 pickle batches."""
from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import torch

from ..errors import MixganError
from .base import Dataset, shown, split


def digits(seed: int = 0, test_fraction: float = 0.2) -> Dataset:
    """scikit-learn's bundled 8x8 digits (1,797 images, values 0..16)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.from_numpy(bunch.images.astype(np.uint8)).unsqueeze(1)
    y = torch.from_numpy(bunch.target.astype(np.int64))
    x_tr, x_te, y_tr, y_te = split(x, y, test_fraction)
    return Dataset("digits", x_tr, x_te, y_tr, y_te, num_classes=10, levels=16)


class _PlainUnpickler(pickle.Unpickler):
    """Accepts numpy arrays, lists, dicts, bytes and strings; refuses every other global."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
    }

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused global {module}.{name}")


def safe_unpickle(raw: bytes):
    """Unpickle plain data only: a payload that names any other callable is refused, not run."""
    return _PlainUnpickler(io.BytesIO(raw), encoding="bytes").load()


def _cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        obj = safe_unpickle(path.read_bytes())
    except FileNotFoundError:
        raise MixganError(f"{shown(path)}: file not found") from None
    except Exception as exc:  # any malformed pickle: name the file, never run it
        raise MixganError(f"{shown(path)}: not a CIFAR-10 batch ({type(exc).__name__}: {' '.join(str(exc).split())})") from None
    if not isinstance(obj, dict) or b"data" not in obj or b"labels" not in obj:
        raise MixganError(f"{shown(path)}: not a CIFAR-10 batch (no data/labels)")
    data, labels = obj[b"data"], obj[b"labels"]
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != 3072:
        raise MixganError(f"{shown(path)}: CIFAR-10 data must be N x 3072")
    if data.dtype != np.uint8 and (not np.issubdtype(data.dtype, np.integer) or
                                   (data.size and (data.min() < 0 or data.max() > 255))):
        raise MixganError(f"{shown(path)}: CIFAR-10 pixels must be integers 0..255, got {data.dtype}")
    if not isinstance(labels, (list, np.ndarray)) or not all(isinstance(v, (int, np.integer)) for v in labels):
        raise MixganError(f"{shown(path)}: CIFAR-10 labels must be a list of integers")
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise MixganError(f"{shown(path)}: CIFAR-10 label {int(labels.max() if labels.max() > 9 else labels.min())} outside 0..9")
    if len(data) != len(labels):
        raise MixganError(f"{shown(path)}: {len(data)} images but {len(labels)} labels")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def cifar10(folder: str | Path) -> Dataset:
    folder = Path(folder)
    if (folder / "cifar-10-batches-py").is_dir():
        folder = folder / "cifar-10-batches-py"
    if not folder.is_dir():
        raise MixganError(f"cifar10: data folder {shown(folder)} does not exist (set --data-dir)")
    files = [folder / f"data_batch_{i}" for i in range(1, 6)]
    train = [_cifar_batch(p) for p in files]
    test = _cifar_batch(folder / "test_batch")

    x_tr = torch.from_numpy(np.concatenate([d for d, _ in train]).astype(np.uint8))
    y_tr = torch.from_numpy(np.concatenate([l for _, l in train]))
    return Dataset("cifar10", x_tr, torch.from_numpy(test[0].astype(np.uint8)), y_tr, torch.from_numpy(test[1]), num_classes=10,
                   files=files + [folder / "test_batch"])


from .folder import image_folder  # noqa: E402,F401  (its home is .folder)
