"""Process-group helpers for torchrun: rank and world from the environment, nccl (GPU) / gloo (CPU).

Nothing here keeps state of its own: the rank and world size come from ``torch.distributed`` once
a group is initialised, and from the ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` variables torchrun
sets before that. Without those variables everything degrades to a single process (rank 0 of 1).
"""

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: global rank, rank on its machine, number of processes."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that logs and saves."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def env_info() -> DistInfo:
    """Rank, local rank and world size as torchrun exports them (0, 0, 1 when absent)."""
    return DistInfo(
        rank=int(os.environ.get("RANK", 0)),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
        world_size=int(os.environ.get("WORLD_SIZE", 1)),
    )


def get_info() -> DistInfo:
    """The current process's place: from the initialised group, else from the environment."""
    if dist.is_available() and dist.is_initialized():
        env = env_info()
        return DistInfo(dist.get_rank(), env.local_rank, dist.get_world_size())
    return env_info()


def get_rank() -> int:
    return get_info().rank


def get_world_size() -> int:
    return get_info().world_size


def is_main_process() -> bool:
    return get_info().is_main


def resolve_device(device: str, info: DistInfo | None = None) -> torch.device:
    """The device of this process: ``"auto"`` is CUDA when available, else CPU.

    Under torchrun each process takes the GPU of its local rank (``cuda:LOCAL_RANK``).
    """
    info = env_info() if info is None else info
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    resolved = torch.device(device)
    if resolved.type == "cuda" and resolved.index is None:
        resolved = torch.device("cuda", info.local_rank if info.is_distributed else 0)
    return resolved


def init_process_group(device: torch.device) -> DistInfo:
    """Join the process group torchrun describes (nccl for CUDA, gloo for CPU); no-op alone.

    Args:
        device: this process's device (see :func:`resolve_device`).

    Returns:
        The process's :class:`DistInfo`.
    """
    info = env_info()
    if not info.is_distributed or dist.is_initialized():
        return get_info()
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        # nccl needs each process bound to its own GPU before the first collective.
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend)
    log.info("rank %d/%d joined the %s process group", info.rank, info.world_size, backend)
    return get_info()


def destroy_process_group() -> None:
    """Leave the process group if one was joined."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def wrap_ddp(module: nn.Module, device: torch.device, find_unused_parameters: bool = False):
    """``DistributedDataParallel`` around ``module`` when distributed, else ``module`` itself.

    No ``static_graph``: the double backward of dual score matching runs an inner
    ``torch.autograd.grad`` inside the forward, which only differentiates w.r.t. the inputs (y, t),
    so parameter hooks fire once per step, in the outer ``loss.backward()``.
    """
    if not get_info().is_distributed:
        return module
    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(
        module, device_ids=device_ids, find_unused_parameters=find_unused_parameters
    )


def unwrap(module: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper (or the module itself)."""
    return module.module if isinstance(module, DistributedDataParallel) else module


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """Mean of ``tensor`` over all processes (a new tensor; the input itself when alone)."""
    if not get_info().is_distributed:
        return tensor
    out = tensor.clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / dist.get_world_size()


def any_process(flag: bool, device: torch.device) -> bool:
    """True on every process if ``flag`` is True on any (e.g. a stop request from a signal)."""
    if not get_info().is_distributed:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def all_gather_bytes(tensor: torch.Tensor) -> list[torch.Tensor]:
    """Gather a uint8 tensor of equal size from every process (list indexed by rank, on CPU).

    Used for per-rank RNG states, which differ by rank but not in size.
    """
    if not get_info().is_distributed:
        return [tensor.cpu()]
    backend_device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    local = tensor.to(backend_device)
    parts = [torch.empty_like(local) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, local)
    return [p.cpu() for p in parts]


def barrier() -> None:
    """Wait for every process (no-op alone)."""
    if get_info().is_distributed:
        dist.barrier()
