"""Sharding an evaluation over processes (``torchrun``): which batches each process computes, and
the merge that checks that every batch arrived exactly once.

**Batches, not images, are the unit of work.** Every seed of a batch derives from the base seed
and the image range ``[start, stop)`` the batch covers (:mod:`irad.evaluate.seeds`), never from a
rank or a loop counter; batch boundaries depend on ``batch_size`` alone. A batch computed by any
process therefore gives exactly the adversarial images and scores of a one-process run, and the
merged result equals the one-process result image for image. (Splitting a batch's images over
processes would change the result: an attack such as PGD draws its random start for the whole
batch from one seeded generator, and AutoAttack's and Admix's choices depend on the other images
of the batch.)

Batch ``i`` goes to rank ``i mod world_size`` (round-robin: the processes' loads differ by at most
one batch, also when the last batch is short)::

    >>> Shards(rank=1, world_size=3).indices(8)
    [1, 4, 7]
    >>> merge_shards([{0: "a", 2: "c"}, {1: "b"}], 3)
    ['a', 'b', 'c']

Every process writes its batches' per-image results into the run folder (``partials/``) and its
adversarial images into the cache as it goes, so a crashed job resumes where each process
stopped, with any number of processes: the partial results are keyed by batch, not by rank.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from irad.errors import ConfigError
from irad.train.distributed import DistributedContext, DistributedError

T = TypeVar("T")

#: Recorded with results: how the work of a run was split (the figures do not depend on it).
SHARDING_SCHEME = (
    "batch i (images [start, stop) of randomness.batches[i]) is computed by rank i mod "
    "world_size; every seed derives from the image range, so the figures do not depend on "
    "the number of processes"
)


def shard_indices(n_batches: int, rank: int, world_size: int) -> list[int]:
    """The batches rank ``rank`` of ``world_size`` computes: ``rank, rank + W, rank + 2W, ...``.

    Example:
        >>> shard_indices(5, 0, 2), shard_indices(5, 1, 2)
        ([0, 2, 4], [1, 3])
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ConfigError(f"rank {rank} is not in a job of {world_size} process(es)")
    if n_batches < 0:
        raise ConfigError(f"the number of batches must be >= 0, got {n_batches}")
    return list(range(rank, n_batches, world_size))


def merge_shards(pieces: Sequence[Mapping[int, T]], n_batches: int, what: str = "batch") -> list[T]:
    """Merge the per-batch results of every process into batch order.

    Args:
        pieces: one ``{batch index: result}`` mapping per process.
        n_batches: how many batches the run has.
        what: how to name the work in an error (``"clean batch"``).

    Raises:
        DistributedError: a batch is missing (a process did not deliver it) or delivered twice,
            or an index is out of range; the message names the batches and the ranks.
    """
    merged: dict[int, T] = {}
    owners: dict[int, int] = {}
    twice, outside = [], []
    for rank, piece in enumerate(pieces):
        for index, value in piece.items():
            if not 0 <= index < n_batches:
                outside.append(f"{index} (rank {rank})")
            elif index in merged:
                twice.append(f"{index} (ranks {owners[index]} and {rank})")
            else:
                merged[index], owners[index] = value, rank
    missing = [i for i in range(n_batches) if i not in merged]
    problems = []
    if missing:
        shown = ", ".join(map(str, missing[:20])) + (" ..." if len(missing) > 20 else "")
        problems.append(f"{len(missing)} {what}(es) missing: {shown}")
    if twice:
        problems.append(f"delivered twice: {', '.join(twice[:20])}")
    if outside:
        problems.append(f"outside the run's {n_batches} batches: {', '.join(outside[:20])}")
    if problems:
        raise DistributedError(
            f"cannot merge the shards of {len(pieces)} process(es): {'; '.join(problems)}. Every "
            "process must run the same command (same settings, same data); rerun it to resume "
            "(finished batches are read back from the run folder)"
        )
    return [merged[i] for i in range(n_batches)]


@dataclass(frozen=True)
class Shards:
    """This process's share of an evaluation and how it meets the others.

    Attributes:
        rank, world_size: as ``torchrun`` sets them (0 and 1 for a single process).
        context: the process group to exchange results through (None: this process alone; its
            results are then all there is, and a merge that lacks the other ranks' batches
            fails naming them).
    """

    rank: int = 0
    world_size: int = 1
    context: DistributedContext | None = None

    def __post_init__(self) -> None:
        shard_indices(0, self.rank, self.world_size)  # checks rank and world size

    @classmethod
    def from_context(cls, ctx: DistributedContext) -> Shards:
        """The shards of a ``torchrun`` job (a single process: one shard)."""
        if not ctx.is_distributed:
            return cls()
        return cls(ctx.rank, ctx.world_size, ctx)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    def owns(self, index: int) -> bool:
        """Whether this process computes batch ``index``."""
        return index % self.world_size == self.rank

    def indices(self, n_batches: int) -> list[int]:
        return shard_indices(n_batches, self.rank, self.world_size)

    def _exchange(self, obj: Any) -> list[Any]:
        return self.context.all_gather_object(obj) if self.context is not None else [obj]

    def gather(self, mine: Mapping[int, T], n_batches: int, what: str = "batch") -> list[T]:
        """Every batch's result in order, from this process's ``mine`` and the others'."""
        return merge_shards(self._exchange(dict(mine)), n_batches, what)

    def total(self, counts: Mapping[str, int]) -> dict[str, int]:
        """Counters summed over the processes."""
        out: dict[str, int] = {}
        for piece in self._exchange(dict(counts)):
            for key, value in piece.items():
                out[key] = out.get(key, 0) + int(value)
        return out

    def on_main(self, step: Callable[[], T]) -> T:
        """``step()`` run by rank 0 alone, its value handed to every process
        (:meth:`irad.train.distributed.DistributedContext.on_main`)."""
        if self.context is None:
            return step()
        return self.context.on_main(step)

    def info(self) -> dict[str, Any]:
        """JSON-ready record of the split (the figures do not depend on it)."""
        return {"world_size": self.world_size, "scheme": SHARDING_SCHEME}
