"""PyTorch distributed data parallel under torchrun: set-up, wrapping, rank queries.

``torchrun`` (one node or many, through its rendezvous) sets RANK, LOCAL_RANK and
WORLD_SIZE; :func:`init_from_env` joins that process group with NCCL on CUDA and gloo on
CPU. Every rank holds the whole model, trains on its own shard of the data, and DDP
averages the gradients of the modules wrapped by :func:`wrap`, so weights stay identical.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist

from ..config import device_type
from ..errors import MixganError


def world() -> tuple[int, int]:
    """(rank, world size): (0, 1) outside torchrun."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    return world()[0] == 0


def launch_rank() -> int:
    """This process's global rank as the launcher set it, valid before and after the group exists."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0"))


def resolve_device(name: str | torch.device) -> torch.device:
    """The torch device for ``auto``/``cpu``/``cuda``/``cuda:N``, made current on CUDA.

    A bare ``cuda`` names this process's GPU: LOCAL_RANK's under torchrun, else the current one
    (``torch.cuda.set_device`` needs an index). One GPU per process; a rank beyond the machine's
    GPUs is one line, not a CUDA error.
    """
    name = str(name)
    if name == "auto":
        name = device_type(name)
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise MixganError("device 'cuda' requested but no CUDA device is available")
    if name == "cuda":
        local = os.environ.get("LOCAL_RANK")
        name = f"cuda:{int(local) if local is not None else torch.cuda.current_device()}"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise MixganError(f"unknown device '{name}' (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda":
        count = torch.cuda.device_count()
        if device.index >= count:
            raise MixganError(f"device {device} requested but this machine has {count} CUDA device(s): "
                              "use --nproc_per_node <= the number of GPUs, or --device cpu")
        torch.cuda.set_device(device)
    return device


def init_from_env(device: torch.device) -> bool:
    """Join the process group torchrun describes (NCCL on CUDA, gloo on CPU).

    Returns True only when this call created the group (the caller then owns its shutdown);
    a group that already exists, or a single process, gives False.
    """
    if dist.is_initialized() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if not dist.is_available():
        raise MixganError("WORLD_SIZE > 1 but this PyTorch build has no torch.distributed")
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return True


def wrap(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """DDP around a module with trainable parameters; the module itself when single-process.

    Buffers (batch-norm statistics, the static mixture's means) are broadcast from rank 0 at
    every forward of the wrapper, DDP's default.
    """
    if world()[1] == 1 or not any(p.requires_grad for p in module.parameters()):
        return module
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(module, device_ids=ids)


def barrier() -> None:
    if world()[1] > 1:
        dist.barrier()


def broadcast_object(obj):
    """rank 0's value of a picklable object on every rank (used for the run directory name)."""
    if world()[1] == 1:
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def sync_buffers(modules) -> None:
    """Give every rank rank 0's buffers (batch-norm statistics drift apart after the last forward)."""
    if world()[1] == 1:
        return
    for module in modules:
        for buf in module.buffers():
            dist.broadcast(buf.data, src=0)


def min_over_ranks(value: torch.Tensor) -> int:
    """The smallest value of a 0-d integer tensor over every rank (so all ranks stop together on
    a NaN, naming the same step); the one host read of a vote."""
    if world()[1] == 1:
        return int(value)
    t = value.detach().reshape(1).clone().to("cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return int(t.item())


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
