"""Checkpoints that cannot run code and cannot be half-written.

A checkpoint is two files, ``step-NNNNNN.safetensors`` (every tensor: weights, buffers,
optimizer moments) and ``step-NNNNNN.json`` (counters, optimizer hyper-parameters, the
tensors file's SHA-256 and size, the resolved config, and the SHA-256 of the record itself).
Each is written to a temporary name, flushed and renamed; the JSON comes last, so a checkpoint
exists only once both are complete. A loader that finds damage (a checksum or size mismatch, an
edited record, a record without tensors or tensors without a record) skips the checkpoint for
the next older one and says so with a :class:`MixganWarning`.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from ..errors import MixganError, MixganWarning
from ..io import atomic_write_bytes, atomic_write_text

_NAME = re.compile(r"^step-(\d{6,})\.json$")
_ANY = re.compile(r"^step-(\d{6,})\.(json|safetensors)$")


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


def seal(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` with ``record_sha256``: the SHA-256 of everything else in it (step, counters,
    config), so an edited record is found."""
    body = {k: v for k, v in record.items() if k != "record_sha256"}
    return {**body, "record_sha256": hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()}


def save_checkpoint(folder: Path, step: int, states: dict[str, Any], meta: dict[str, Any], keep: int = 2,
                    protect: tuple[int, ...] = ()) -> Path:
    """Write the states of modules/optimizers (name -> state_dict) and keep the newest ``keep``
    besides the steps in ``protect`` (the best one by FID)."""
    folder.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    skeleton = {name: flatten_state(name, state, tensors) for name, state in states.items()}
    stem = f"step-{step:06d}"
    tensor_path = folder / f"{stem}.safetensors"
    blob = save(tensors)
    atomic_write_bytes(tensor_path, blob)
    record = {"step": step, "tensors": tensor_path.name, "sha256": hashlib.sha256(blob).hexdigest(),
              "bytes": len(blob), "states": skeleton, **meta}
    atomic_write_text(folder / f"{stem}.json", json.dumps(seal(record)))
    kept = list_checkpoints(folder)[-keep:]
    oldest = int(_NAME.match(kept[0].name).group(1))
    for pattern in (_NAME, _ANY):  # older records, then their tensors (and those a kill left without a record)
        for path in folder.iterdir():
            if (m := pattern.match(path.name)) and int(m.group(1)) < oldest and int(m.group(1)) not in protect:
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


class CheckpointDamaged(MixganError):
    """A checkpoint that does not read back intact; ``reason`` says why, without the file name."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


def read_checkpoint(record_path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(states, record) of one checkpoint; any damage is a CheckpointDamaged naming the file."""
    try:
        record = json.loads(record_path.read_text())
        _check_record(record)
        if "record_sha256" in record and seal(record)["record_sha256"] != record["record_sha256"]:
            raise CheckpointDamaged(record_path, "edited record: it does not match its own checksum")
        name = _NAME.match(record_path.name)
        if name and int(name.group(1)) != record["step"]:
            raise CheckpointDamaged(record_path, f"edited record: it says step {record['step']}")
        tensor_path = record_path.with_name(record["tensors"])
        if not tensor_path.is_file():
            raise CheckpointDamaged(tensor_path, f"missing tensors file: {record_path.name} names it")
        size = tensor_path.stat().st_size
        if isinstance(record.get("bytes"), int) and size != record["bytes"]:
            what = "truncated" if size < record["bytes"] else "longer than written"
            raise CheckpointDamaged(tensor_path, f"{what}: {size} bytes where {record_path.name} says {record['bytes']}")
        if _sha256(tensor_path) != record["sha256"]:
            raise CheckpointDamaged(tensor_path, f"hash mismatch: contents do not match the checksum in {record_path.name}")
        tensors = load_file(str(tensor_path))
        states = {name: unflatten_state(tree, tensors) for name, tree in record["states"].items()}
    except MixganError:
        raise
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError, SafetensorError) as exc:
        raise CheckpointDamaged(record_path, f"unreadable checkpoint ({type(exc).__name__}: "
                                             f"{' '.join(str(exc).split())})") from None
    return states, record


@dataclass
class Damaged:
    """A checkpoint that was skipped: its step, its files on disk and why."""

    step: int
    files: list[Path]
    path: Path  # the file at fault
    reason: str


def scan_checkpoints(folder: Path) -> tuple[tuple[dict[str, Any], dict[str, Any]] | None, list[Damaged]]:
    """The newest checkpoint that reads back intact (or None), and the damaged ones newer than it,
    newest first: a tensors file without its record counts as damaged."""
    steps: dict[int, list[Path]] = {}
    if folder.is_dir():
        for path in folder.iterdir():
            if m := _ANY.match(path.name):
                steps.setdefault(int(m.group(1)), []).append(path)
    damaged = []
    for step in sorted(steps, reverse=True):
        files = sorted(steps[step])
        record = folder / f"step-{step:06d}.json"
        if record not in files:
            damaged.append(Damaged(step, files, files[0], f"missing sidecar: no {record.name} beside it"))
            continue
        try:
            return read_checkpoint(record), damaged
        except CheckpointDamaged as exc:
            damaged.append(Damaged(step, files, exc.path, exc.reason))
    return None, damaged


def describe_damage(damaged: list[Damaged], used: int | None) -> list[str]:
    """One line per skipped checkpoint: the file, why, and which step is used instead."""
    instead = f"using step {used} instead" if used is not None else "no intact checkpoint is left"
    return [f"skipped damaged checkpoint {d.path} ({d.reason}); {instead}" for d in damaged]


def latest_checkpoint(folder: Path) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The newest checkpoint that reads back intact, or None where there is none at all.

    Each damaged newer one is skipped with a :class:`MixganWarning` naming it; where every
    checkpoint is damaged, the newest one's damage is raised."""
    found, damaged = scan_checkpoints(folder)
    if found is None and damaged:
        d = damaged[0]
        raise MixganError(f"{d.path}: {d.reason}; no intact checkpoint in {folder}")
    for line in describe_damage(damaged, found[1]["step"] if found else None):
        warnings.warn(line, MixganWarning, stacklevel=2)
    return found


def move_aside(damaged: list[Damaged]) -> list[Path]:
    """Rename each damaged checkpoint's files to ``*.damaged`` (kept for inspection, never
    overwritten by a resumed run); returns the new names."""
    moved = []
    for d in damaged:
        for path in d.files:
            target = path.with_name(path.name + ".damaged")
            n = 1
            while target.exists():
                target, n = path.with_name(f"{path.name}.damaged-{n}"), n + 1
            os.replace(path, target)
            moved.append(target)
    return moved


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
