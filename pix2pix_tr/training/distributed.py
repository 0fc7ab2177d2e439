"""Devices and torchrun/DistributedDataParallel plumbing.

train.py runs as one process, or as one process per GPU (or per CPU worker) under ``torchrun``, which sets
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``. :func:`init_distributed` reads
them, picks the device (``cuda:LOCAL_RANK`` under torchrun with CUDA) and starts the process group: NCCL on
CUDA, gloo on CPU. :class:`DistContext` carries rank/world size and the few collectives the loop needs
(agreeing on a stop, averaging a metric); with one process they are free no-ops.

BatchNorm buffers under DDP. DDP's default ``broadcast_buffers=True`` copies rank 0's running statistics into
the other ranks *at the start of every forward through the wrapper*. pix2pix runs D twice per D update (the fake
pair through the plain module, then the real pair through DDP, see :mod:`pix2pix_tr.models.pix2pix`), and
batch norm saves its running statistics for the backward pass, so on some torch versions (2.11 among them) that
in-place copy on rank 1 invalidates the saved tensors of the fake pass ("modified by an inplace operation").
:func:`ddp_wrap` therefore turns the broadcast off and :meth:`DistContext.sync_buffers` does the same broadcast
at the start of each iteration instead, before any forward pass saved anything. Rank 0 (whose networks are
saved) computes exactly what it did before; the parameters stay identical on every rank, as DDP promises.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn

from .errors import TrainingError


def select_device(spec: str = "auto", local_rank: int = 0, distributed: bool = False) -> torch.device:
    """``auto``: CUDA when present (``cuda:LOCAL_RANK`` under torchrun), else CPU; otherwise the named device."""
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(spec)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise TrainingError(f"--device {spec}: no CUDA device is visible; use --device cpu (or auto)")
        if device.index is None:
            device = torch.device("cuda", local_rank if distributed else torch.cuda.current_device())
        if device.index >= torch.cuda.device_count():
            raise TrainingError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    return device


@dataclass
class DistContext:
    """Where this process stands: ``rank`` of ``world_size`` processes, its ``device``."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        """Only the main process (rank 0) writes files and prints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def any(self, flag: bool) -> bool:
        """True on every rank if ``flag`` is True on any rank (so all ranks stop at the same iteration)."""
        if not self.distributed:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def mean(self, value: float) -> float:
        """The mean of ``value`` over ranks (so a plateau schedule takes the same decision everywhere)."""
        if not self.distributed:
            return value
        t = torch.tensor([float(value)], dtype=torch.float64 if self.device.type == "cpu" else torch.float32,
                         device=self.device)
        dist.all_reduce(t)
        return float(t.item()) / self.world_size

    def sync_buffers(self, module: nn.Module) -> None:
        """Copy rank 0's buffers (BatchNorm running statistics) into every rank; call it between iterations."""
        if not self.distributed:
            return
        with torch.no_grad():
            for buf in module.buffers():
                dist.broadcast(buf, src=0)

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
            self.owns_group = False


def init_distributed(device_spec: str = "auto", *, timeout_minutes: float = 30) -> DistContext:
    """Read torchrun's environment; start the process group when ``WORLD_SIZE > 1``."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = select_device(device_spec, local_rank, distributed=world_size > 1)
    if world_size <= 1:
        return DistContext(device=device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    owns = False
    if not dist.is_initialized():
        kwargs = {"device_id": device} if backend == "nccl" else {}
        dist.init_process_group(backend, rank=rank, world_size=world_size,
                                timeout=datetime.timedelta(minutes=timeout_minutes), **kwargs)
        owns = True
    return DistContext(device=device, rank=rank, world_size=world_size, local_rank=local_rank, owns_group=owns)


def ddp_wrap(G: nn.Module, D: nn.Module, ctx: DistContext) -> tuple[nn.Module, nn.Module]:
    """DistributedDataParallel wrappers of G and D for ``ctx``; D's buffers are synchronised by
    :meth:`DistContext.sync_buffers` (called by the loop before each iteration), not inside its forward."""
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return (nn.parallel.DistributedDataParallel(G, device_ids=ids),
            nn.parallel.DistributedDataParallel(D, device_ids=ids, broadcast_buffers=False))
