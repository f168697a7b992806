"""Distributed data parallel (DDP) as configuration: the same loop runs on 1 or N processes.

Launch any irad training with ``torchrun --nproc_per_node N --no-python irad train-...``;
``torchrun`` sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``, and :func:`setup_distributed` joins
the process group (NCCL on CUDA, Gloo on CPU). Without those variables everything here is a no-op
for a single process, so the trainer has one code path.

How work is split: every process draws the same global batch (same seed, same order) and keeps
its own contiguous slice of it (:func:`shard_batch`), DDP averages the gradients, and so a step
sees the same ``batch_size`` samples whatever the number of processes. Only rank 0 writes files
and prints.

Evaluation (``irad evaluate``, ``irad reproduce``) and pair generation (``irad prepare-pairs``)
use the same context differently: they split *whole batches* (chunks of pairs) over the
processes, each process writes its own batches' results, and the results are exchanged with
:meth:`DistributedContext.all_gather_object` (see :mod:`irad.evaluate.shards`).
"""

from __future__ import annotations

import atexit
import datetime
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from irad.errors import ConfigError, IradError

#: How long a process waits for the others in an evaluation or pair generation under
#: ``torchrun``: shards of one attack can finish hours apart (``torchrun`` stops the job at once
#: when a process fails, so nothing waits this long for a dead process).
WORK_TIMEOUT = datetime.timedelta(hours=24)


class DistributedError(IradError, RuntimeError):
    """Another process of a ``torchrun`` job failed or did not deliver its share of the work."""


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in a (possibly single-process) job.

    Attributes:
        rank: global index of this process (0 for a single process).
        local_rank: index on this machine; picks the CUDA device.
        world_size: number of processes.
        owns_group: True when :func:`setup_distributed` created the process group (and
            :meth:`close` destroys it).
    """

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes checkpoints and prints."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.is_distributed:
            dist.barrier()

    def all_reduce_sum(self, values: Tensor) -> Tensor:
        """Sum ``values`` over processes (in place, and returned); identity for one process."""
        if self.is_distributed:
            dist.all_reduce(values, op=dist.ReduceOp.SUM)
        return values

    def all_gather_object(self, obj: Any) -> list[Any]:
        """Every process's ``obj`` (picklable), in rank order; ``[obj]`` for one process."""
        if not self.is_distributed:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast_object(self, obj: Any, src: int = 0) -> Any:
        """``obj`` of rank ``src`` on every process (picklable); ``obj`` itself for one process."""
        if not self.is_distributed:
            return obj
        box = [obj if self.rank == src else None]
        dist.broadcast_object_list(box, src=src)
        return box[0]

    def on_main(self, step: Callable[[], Any]) -> Any:
        """Run ``step`` on rank 0 only and hand its value to every process.

        The other processes wait. An exception on rank 0 is raised there and, as a
        :class:`DistributedError` naming it, on every other rank, so no process is left waiting
        for a rank that stopped.
        """
        if not self.is_distributed:
            return step()
        value: Any = None
        failure: BaseException | None = None
        if self.is_main:
            try:
                value = step()
            except Exception as err:  # re-raised below, after the others are told
                failure = err
        message = None if failure is None else f"{type(failure).__name__}: {failure}"
        message, value = self.broadcast_object((message, value if failure is None else None))
        if failure is not None:
            raise failure
        if message is not None:
            raise DistributedError(f"rank 0 stopped, so this rank stops too: {message}")
        return value

    def close(self) -> None:
        """Destroy the process group if this context created it."""
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as err:
        raise ConfigError(f"environment variable {name} must be an integer, got {raw!r}") from err


def context_from_env() -> DistributedContext:
    """Rank and world size from ``torchrun``'s environment, without joining any group.

    Example:
        >>> context_from_env().world_size >= 1
        True
    """
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return DistributedContext()
    rank = _env_int("RANK", 0)
    return DistributedContext(rank=rank, local_rank=_env_int("LOCAL_RANK", rank), world_size=world)


def setup_distributed(
    device: torch.device,
    *,
    timeout: datetime.timedelta | None = None,
    until_exit: bool = False,
) -> DistributedContext:
    """Join the ``torchrun`` process group when ``WORLD_SIZE > 1``; else a single-process context.

    Uses NCCL for CUDA devices and Gloo for CPU. Reuses a group the caller already created.
    ``timeout``: how long a collective waits for the slowest process (torch's default, 30
    minutes, when None); an evaluation whose shards may finish hours apart passes more.
    ``until_exit``: keep the group until the process exits instead of handing it to the
    context's :meth:`~DistributedContext.close`, so that later calls in the same process (an
    evaluation, then pair generation) reuse it: a group re-created on ``torchrun``'s rendezvous
    can fail to connect.
    """
    ctx = context_from_env()
    if not ctx.is_distributed:
        return ctx
    if dist.is_initialized():
        return ctx
    if device.type == "cuda":
        torch.cuda.set_device(device)
    kwargs: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", **kwargs)
    if until_exit:
        atexit.register(_destroy_at_exit)
    return DistributedContext(ctx.rank, ctx.local_rank, ctx.world_size, owns_group=not until_exit)


def _destroy_at_exit() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def local_device(device: torch.device, ctx: DistributedContext) -> torch.device:
    """The device of this process: ``cuda`` without an index becomes ``cuda:LOCAL_RANK`` in a
    job of several processes (one GPU per process); anything else is kept.

    Example:
        >>> local_device(torch.device("cuda"), DistributedContext(3, 1, 4)).index
        1
        >>> local_device(torch.device("cpu"), DistributedContext(3, 1, 4)).type
        'cpu'
    """
    if ctx.is_distributed and device.type == "cuda" and device.index is None:
        return torch.device("cuda", ctx.local_rank)
    return device


def shard_batch(batch: Any, rank: int, world_size: int) -> Any:
    """This process's contiguous slice of every tensor in a (nested) batch, along dim 0.

    Non-tensor leaves and 0-d tensors are passed through. Every sliced tensor's first dimension
    must divide evenly by ``world_size`` (use a batch size that is a multiple of it, with
    ``drop_last``), so that averaging the per-process gradients equals the full-batch gradient.

    Shape:
        - Input: tensors ``(B, ...)``; output: tensors ``(B // world_size, ...)``.

    Example:
        >>> x, y = shard_batch((torch.arange(8).view(4, 2), torch.arange(4)), 1, 2)
        >>> y.tolist()
        [2, 3]
    """
    if world_size == 1:
        return batch
    if isinstance(batch, Tensor):
        if batch.ndim == 0:
            return batch
        n = batch.shape[0]
        if n % world_size:
            raise ConfigError(
                f"a batch of {n} samples cannot be split evenly over {world_size} processes: "
                "use a batch size that is a multiple of the number of processes"
            )
        size = n // world_size
        return batch[rank * size : (rank + 1) * size]
    if isinstance(batch, Mapping):
        return {k: shard_batch(v, rank, world_size) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # a NamedTuple
        return type(batch)(*(shard_batch(v, rank, world_size) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(shard_batch(v, rank, world_size) for v in batch)
    return batch


def move_to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor of a (nested) batch to ``device``; other leaves pass through."""
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: move_to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(move_to_device(v, device) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to_device(v, device) for v in batch)
    return batch


def batch_length(batch: Any) -> int:
    """Samples in a batch: the first dimension of its first tensor (0 if it holds none)."""
    if isinstance(batch, Tensor):
        return int(batch.shape[0]) if batch.ndim else 1
    values = batch.values() if isinstance(batch, Mapping) else batch
    if isinstance(values, (list, tuple)) or isinstance(batch, Mapping):
        for v in values:
            n = batch_length(v)
            if n:
                return n
    return 0
