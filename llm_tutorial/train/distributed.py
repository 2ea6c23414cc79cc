"""Data parallelism with ``torchrun``: every process holds the whole model and a slice of the batch.

``torchrun --nproc_per_node=N`` starts N copies of the same script and tells each its ``RANK``,
``LOCAL_RANK`` and ``WORLD_SIZE`` through environment variables. Each copy computes gradients on
its slice of the batch; ``DistributedDataParallel`` averages them across processes during the
backward pass, so every copy applies the same update and the models stay identical.

Here every process draws the *whole* global batch from the same seeded generator and keeps its
own slice. Drawing costs little, and it makes N processes see exactly the examples one process
would, which is what lets a test check that distributed training equals single-process training.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .batch import Batch, map_tensors


@dataclass(frozen=True)
class Process:
    """Where this process sits: its rank among ``world_size`` and the device it computes on."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0 alone logs, draws the progress bar and writes checkpoints."""
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """True when ``torchrun`` (``torch.distributed.run``) started this process."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and "LOCAL_RANK" in os.environ


def start_process_group(device: str | None = None) -> Process:
    """Join the process group ``torchrun`` prepared: NCCL between GPUs, gloo between CPU processes.

    On CUDA, local rank ``r`` takes GPU ``r``. Without ``torchrun`` this returns a single process
    (rank 0 of 1) on ``device`` and starts nothing.
    """
    from ..runtime import get_device

    if not launched_by_torchrun():
        return Process(rank=0, world_size=1, device=get_device(device))
    local_rank = int(os.environ["LOCAL_RANK"])
    chosen = get_device(device)
    if chosen.type == "cuda":
        chosen = torch.device("cuda", local_rank)
        torch.cuda.set_device(chosen)
    elif chosen.type != "cpu":
        raise ValueError(f"distributed training runs on CUDA (nccl) or CPU (gloo), got device {chosen}")
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if chosen.type == "cuda" else "gloo")
    return Process(rank=dist.get_rank(), world_size=dist.get_world_size(), device=chosen)


def end_process_group() -> None:
    """Leave the process group, if one was started."""
    if dist.is_initialized():
        dist.destroy_process_group()


def current_process(device: torch.device) -> Process:
    """This process's rank and world size (0 of 1 when no process group is running)."""
    if dist.is_initialized():
        return Process(rank=dist.get_rank(), world_size=dist.get_world_size(), device=device)
    return Process(rank=0, world_size=1, device=device)


def all_reduce_mean(tensor: torch.Tensor, process: Process) -> torch.Tensor:
    """The element-wise mean of ``tensor`` over all processes (itself when alone).

    gloo has no AVG reduction, so this sums and divides."""
    if process.world_size == 1:
        return tensor
    total = tensor.clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total / process.world_size


def barrier(process: Process) -> None:
    """Wait until every process reaches this line (nothing to wait for when alone)."""
    if process.world_size > 1:
        dist.barrier()


def shard(batch: Batch, process: Process) -> Batch:
    """This process's slice of a global batch along dimension 0.

    Every tensor in ``batch`` must have a first dimension divisible by the world size."""
    if process.world_size == 1:
        return batch

    def own_slice(tensor: torch.Tensor) -> torch.Tensor:
        size = tensor.shape[0]
        if size % process.world_size:
            raise ValueError(
                f"a batch of {size} examples cannot be split evenly over {process.world_size} processes; "
                "choose a batch_size divisible by the number of processes"
            )
        per_rank = size // process.world_size
        return tensor[process.rank * per_rank:(process.rank + 1) * per_rank]

    return map_tensors(batch, own_slice)
