"""Seeds are explicit: every entry point takes one and records it with its results."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterable, Iterator

import numpy as np
import torch


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a torch generator seeded the same way.

    Prefer passing the returned generator to code that draws random numbers, so that results do
    not depend on what else consumed the global stream.
    """
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def _cuda_index(device: torch.device) -> int:
    return torch.cuda.current_device() if device.index is None else device.index


@contextlib.contextmanager
def seeded(seed: int, devices: Iterable[torch.device | str] = ()) -> Iterator[torch.Generator]:
    """Run the block with torch's global RNG forked and seeded; the outer state is restored.

    The CPU stream is always forked; the CUDA streams of the CUDA devices in ``devices`` are
    forked too (CPU entries are accepted and need nothing more). The block gets a
    :class:`torch.Generator` seeded alike on the first of ``devices`` (the CPU if none), for code
    that draws from a generator rather than the global stream.

    Example:
        >>> with seeded(3):
        ...     a = torch.rand(2)
        >>> with seeded(3) as g:
        ...     b = torch.rand(2)
        >>> bool((a == b).all()), torch.rand(2, generator=g).shape
        (True, torch.Size([2]))
    """
    devices = [torch.device(d) for d in devices]
    cuda = sorted({_cuda_index(d) for d in devices if d.type == "cuda"})
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        generator = torch.Generator(device=devices[0] if devices else "cpu")
        generator.manual_seed(seed)
        yield generator
