"""Cost in milliseconds per image: the median of repeated timed batches after a warm-up.

Timings depend on the machine, the batch size and the thread count, so all three are recorded
with the figure; compare costs as ratios between rows of one table, never across machines.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from irad.errors import ConfigError


@dataclass(frozen=True)
class CostResult:
    """Median milliseconds per image of one module, with how it was measured."""

    ms_per_image: float
    batch_size: int
    threads: int
    repeats: int
    warmup: int
    device: str
    batch_ms: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CostResult:
        return cls(**data)


@contextlib.contextmanager
def num_threads(threads: int | None) -> Iterator[int]:
    """Set torch's intra-op thread count inside the block (None: leave it), then restore it."""
    before = torch.get_num_threads()
    if threads is not None:
        if threads < 1:
            raise ConfigError(f"threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def synchronize(device: torch.device) -> None:
    """Wait for ``device``'s queued work (CUDA runs asynchronously): call before each clock
    reading that times GPU work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_cost(
    module: nn.Module,
    images: Tensor,
    *,
    repeats: int = 5,
    warmup: int = 1,
    threads: int | None = None,
) -> CostResult:
    """Time ``module(images)`` and return the median milliseconds per image.

    The module runs under ``torch.no_grad()`` on the device of ``images``; ``warmup`` untimed
    batches come first (allocator, kernel selection, lazy init).

    Shape:
        - images: ``(B, 3, H, W)``; ``B`` is the recorded batch size.

    Example:
        >>> cost = measure_cost(nn.Identity(), torch.rand(4, 3, 8, 8), repeats=3)
        >>> cost.batch_size, len(cost.batch_ms)
        (4, 3)
    """
    if repeats < 1:
        raise ConfigError(f"repeats must be >= 1, got {repeats}")
    if warmup < 0:
        raise ConfigError(f"warmup must be >= 0, got {warmup}")
    batch = images.shape[0]
    device = images.device
    times: list[float] = []
    with num_threads(threads) as used, torch.no_grad():
        for i in range(warmup + repeats):
            synchronize(device)
            start = time.perf_counter()
            module(images)
            synchronize(device)
            elapsed = (time.perf_counter() - start) * 1000.0
            if i >= warmup:
                times.append(elapsed)
    return CostResult(
        ms_per_image=statistics.median(times) / batch,
        batch_size=batch,
        threads=used,
        repeats=repeats,
        warmup=warmup,
        device=str(device),
        batch_ms=[round(t, 4) for t in times],
    )
