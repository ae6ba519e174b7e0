"""Multi-process data parallelism (torch.distributed), launched with ``torchrun``.

``torchrun --standalone --nproc_per_node=G -- $(which mogsim) train ...`` sets RANK, WORLD_SIZE and LOCAL_RANK;
:func:`setup_distributed` reads them, joins the process group (NCCL on CUDA, gloo on CPU) and picks
``cuda:LOCAL_RANK``. Every rank holds the whole
(small) training set and computes the same global batch indices and noise; rank r trains on the r-th of
``WORLD_SIZE`` equal slices, DDP averages the gradients, and only rank 0 writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from ..devices import resolve_device
from ..errors import InputError


@dataclass
class DistContext:
    """This process's place in the job: rank, world size, local rank and device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    initialized_here: bool = False

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes files and shows progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def all_gather_object(self, obj: Any) -> list[Any]:
        """``[obj of rank 0, obj of rank 1, ...]`` on every rank."""
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def all_reduce_(self, tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
        """In-place sum / min / max over ranks."""
        if self.distributed:
            dist.all_reduce(tensor, op={"sum": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN,
                                        "max": dist.ReduceOp.MAX}[op])
        return tensor


def setup_distributed(device: str | torch.device = "auto", *, rank: int | None = None,
                      world_size: int | None = None, init_method: str | None = None) -> DistContext:
    """Join the process group when WORLD_SIZE > 1 (from torchrun, or passed explicitly), else a single process.

    ``device`` ``auto``/``cuda`` give ``cuda:LOCAL_RANK`` in a multi-GPU job; ``cpu`` gives gloo on CPU.
    """
    world = int(world_size if world_size is not None else os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext(device=resolve_device(device))
    rank = int(rank if rank is not None else os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    dev = resolve_device(device)
    if dev.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise InputError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} GPUs are visible; "
                             "launch at most one process per GPU")
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    created = False
    if not dist.is_initialized():
        kwargs: dict[str, Any] = {"backend": backend, "rank": rank, "world_size": world}
        if init_method is not None:
            kwargs["init_method"] = init_method
        if dev.type == "cuda":
            kwargs["device_id"] = dev
        dist.init_process_group(**kwargs)
        created = True
    return DistContext(rank=rank, world_size=world, local_rank=local_rank, device=dev, initialized_here=created)


def cleanup_distributed(ctx: DistContext) -> None:
    """Leave the process group if :func:`setup_distributed` created it."""
    if ctx.initialized_here and dist.is_initialized():
        dist.destroy_process_group()
