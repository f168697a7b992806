"""Seeds are explicit: every entry point takes one and records it with its results."""

from __future__ import annotations

import random

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
