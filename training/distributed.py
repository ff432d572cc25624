"""Process-group set-up and the few collectives training needs (torchvision's ``init_distributed_mode``).

After :func:`setup` the rest of the code asks only ``ctx.is_main`` and calls the helpers here, which are
no-ops in a single process.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from .config import DistEnv

# Long enough for rank 0 to write a checkpoint or the artifact while the others wait at a barrier.
PROCESS_GROUP_TIMEOUT = timedelta(minutes=30)


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def cpu_threads(threads: int, local_world_size: int) -> int:
    """Intra-op threads per process: the CPUs this process may run on, shared by the host's processes.

    torchrun sets ``OMP_NUM_THREADS=1`` for every worker when it starts more than one, which starves a
    CPU-only run; dividing the affinity mask keeps N processes from oversubscribing the cores instead.
    """
    if threads > 0:
        return threads
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, available // max(1, local_world_size))


def setup(env: DistEnv, threads: int = 0) -> DistContext:
    """Pick the device, join the process group (NCCL on GPUs, gloo on CPU) and size the CPU thread pool."""
    if torch.cuda.is_available():
        device = torch.device("cuda", env.local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        device = torch.device("cpu")
        backend = "gloo"
        torch.set_num_threads(cpu_threads(threads, env.local_world_size))
    if env.distributed and not dist.is_initialized():
        # env:// reads MASTER_ADDR/MASTER_PORT/RANK/WORLD_SIZE, which torchrun set.
        dist.init_process_group(backend=backend, timeout=PROCESS_GROUP_TIMEOUT)
    return DistContext(rank=env.rank, world_size=env.world_size, local_rank=env.local_rank, device=device)


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def all_reduce_sum(ctx: DistContext, values: torch.Tensor) -> torch.Tensor:
    """Element-wise sum over ranks (float64 on the backend's device, so counts stay exact)."""
    if not ctx.distributed:
        return values
    reduced = values.to(ctx.device, torch.float64)
    dist.all_reduce(reduced, op=dist.ReduceOp.SUM)
    return reduced.cpu()


def any_rank(ctx: DistContext, flag: bool) -> bool:
    """True on every rank if it is true on at least one (e.g. one rank got SIGTERM)."""
    if not ctx.distributed:
        return flag
    return bool(all_reduce_sum(ctx, torch.tensor([1.0 if flag else 0.0])).item() > 0)


def gather_objects(ctx: DistContext, obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not ctx.distributed:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_buffers(ctx: DistContext, module: torch.nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank.

    DDP broadcasts buffers at the start of each forward, so after the last step of an epoch each rank
    holds statistics updated by its own last batch. Evaluation and the checkpoint use rank 0's.
    """
    _broadcast_from_rank0(ctx, [buffer.data for buffer in module.buffers()])


def broadcast_state(ctx: DistContext, module: torch.nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every rank (weights only rank 0 holds: the best epoch's)."""
    _broadcast_from_rank0(ctx, module.state_dict().values())


def _broadcast_from_rank0(ctx: DistContext, tensors: Iterable[torch.Tensor]) -> None:
    if not ctx.distributed:
        return
    for tensor in tensors:
        # A channels_last weight is not contiguous; the collectives want a dense row-major buffer.
        dense = tensor.contiguous()
        dist.broadcast(dense, src=0)
        if dense.data_ptr() != tensor.data_ptr():
            tensor.copy_(dense)
