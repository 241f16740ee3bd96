"""Checkpoints that cannot run code and cannot be half-written.

A checkpoint is two files, ``step-NNNNNN.safetensors`` (every tensor: weights, buffers,
optimizer moments) and ``step-NNNNNN.json`` (counters, optimizer hyper-parameters, the
tensors file's SHA-256). Each is written to a temporary name, flushed and renamed; the JSON
comes last, so a checkpoint exists only once both are complete, and a loader that finds a
hash mismatch skips it.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import MixganError
from ..io import atomic_write_text

_NAME = re.compile(r"^step-(\d{6,})\.json$")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def flatten_state(prefix: str, state: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Move every tensor of a nested state into ``tensors``; return the JSON-able rest."""
    if isinstance(state, torch.Tensor):
        tensors[prefix] = state.detach().cpu().contiguous().clone()
        return {"__tensor__": prefix}
    if isinstance(state, dict):
        return {"__dict__": [[k, flatten_state(f"{prefix}.{k}", v, tensors)] for k, v in state.items()]}
    if isinstance(state, (list, tuple)):
        return [flatten_state(f"{prefix}.{i}", v, tensors) for i, v in enumerate(state)]
    return state


def unflatten_state(tree: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(tree, dict) and "__tensor__" in tree:
        return tensors[tree["__tensor__"]]
    if isinstance(tree, dict) and "__dict__" in tree:
        return {k: unflatten_state(v, tensors) for k, v in tree["__dict__"]}
    if isinstance(tree, list):
        return [unflatten_state(v, tensors) for v in tree]
    return tree


def save_checkpoint(folder: Path, step: int, states: dict[str, Any], meta: dict[str, Any], keep: int = 2,
                    protect: tuple[int, ...] = ()) -> Path:
    """Write the states of modules/optimizers (name -> state_dict) and keep the newest ``keep``
    besides the steps in ``protect`` (the best one by FID)."""
    folder.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    skeleton = {name: flatten_state(name, state, tensors) for name, state in states.items()}
    stem = f"step-{step:06d}"
    tensor_path = folder / f"{stem}.safetensors"
    tmp = folder / f".{stem}.safetensors.tmp-{os.getpid()}"
    save_file(tensors, str(tmp))
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, tensor_path)
    record = {"step": step, "tensors": tensor_path.name, "sha256": _sha256(tensor_path),
              "states": skeleton, **meta}
    atomic_write_text(folder / f"{stem}.json", json.dumps(record))
    for old in list_checkpoints(folder)[:-keep]:
        if checkpoint_step(old) in protect:
            continue
        for path in (old, old.with_suffix(".safetensors")):
            path.unlink(missing_ok=True)
    return folder / f"{stem}.json"


def checkpoint_step(record_path: Path) -> int:
    """The step in a checkpoint record's name."""
    return int(_NAME.match(record_path.name).group(1))


def list_checkpoints(folder: Path) -> list[Path]:
    """JSON records of the checkpoints in ``folder``, oldest first."""
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def _check_record(record: Any) -> None:
    """Refuse a record whose fields are not what save_checkpoint writes."""
    if not isinstance(record, dict):
        raise TypeError("the record is not a JSON object")
    kinds = {"step": int, "tensors": str, "sha256": str, "states": dict}
    for key, kind in kinds.items():
        if not isinstance(record.get(key), kind) or isinstance(record.get(key), bool):
            raise TypeError(f"field '{key}' is missing or not a {kind.__name__}")
    if record["step"] < 0:
        raise ValueError(f"negative step {record['step']}")
    if "data_spec" in record:
        spec = record["data_spec"]
        shape = spec.get("shape") if isinstance(spec, dict) else None
        if (not isinstance(shape, list) or not 1 <= len(shape) <= 3
                or not all(isinstance(v, int) and not isinstance(v, bool) and 0 < v <= 4096 for v in shape)
                or not isinstance(spec.get("name"), str) or not isinstance(spec.get("num_classes", 0), int)
                or not isinstance(spec.get("kind", "image"), str) or not isinstance(spec.get("cond_dim", 0), int)
                or not 0 <= spec.get("num_classes", 0) <= 100_000 or not 0 <= spec.get("cond_dim", 0) <= 100_000):
            raise ValueError("field 'data_spec' is malformed")


def read_checkpoint(record_path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(states, record) of one checkpoint; any damage is a MixganError naming the file."""
    try:
        record = json.loads(record_path.read_text())
        _check_record(record)
        tensor_path = record_path.with_name(record["tensors"])
        if _sha256(tensor_path) != record["sha256"]:
            raise MixganError(f"{tensor_path}: contents do not match the checksum in {record_path.name}")
        tensors = load_file(str(tensor_path))
        states = {name: unflatten_state(tree, tensors) for name, tree in record["states"].items()}
    except MixganError:
        raise
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError, SafetensorError) as exc:
        raise MixganError(f"{record_path}: unreadable checkpoint ({type(exc).__name__}: {' '.join(str(exc).split())})") from None
    return states, record


def latest_checkpoint(folder: Path) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The newest checkpoint that reads back intact, or None; damaged newer ones are skipped."""
    error = None
    for record_path in reversed(list_checkpoints(folder)):
        try:
            return read_checkpoint(record_path)
        except MixganError as exc:
            error = error or exc
    if error is not None:
        raise error
    return None


def load_module_state(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """Load a state dict, turning any key or shape mismatch into one clear error."""
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise MixganError(f"checkpoint's {what} is not a set of named tensors")
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    if missing or extra:
        detail = f"missing {missing[0]}" if missing else f"unexpected {extra[0]}"
        raise MixganError(f"checkpoint does not fit this model's {what} ({detail}): "
                          "is it from another model, model.arch or model.condition?")
    for key, value in state.items():
        if tuple(own[key].shape) != tuple(value.shape) or own[key].is_floating_point() != value.is_floating_point():
            raise MixganError(f"checkpoint does not fit this model's {what}: {key} is {value.dtype} "
                              f"{tuple(value.shape)}, expected {own[key].dtype} {tuple(own[key].shape)} "
                              "(another model.width or model.arch?)")
    module.load_state_dict(state)
