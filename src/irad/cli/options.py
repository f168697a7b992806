"""Options shared by the commands, declared once: their names, help texts and parsing."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

Device = Annotated[str, typer.Option(help="auto (CUDA if available), cpu, cuda, cuda:N or mps.")]
Threads = Annotated[
    int | None, typer.Option(min=1, help="CPU threads for torch (default: torch's choice).")
]
Progress = Annotated[bool, typer.Option(help="Show progress bars.")]
DataDir = Annotated[
    Path | None,
    typer.Option(help="Where named data sets live (default: $IRAD_DATA, else ~/.cache/irad/data)."),
]
JsonOut = Annotated[
    Path | None,
    typer.Option("--json", help="Also write the result, settings and environment here."),
]
# How every command that takes a number of images picks them (irad.data.select_subset).
Subset = Annotated[
    str,
    typer.Option(
        "--subset",
        help="How the N images (--n, --train-n, --eval-n) are picked: first (the first N in "
        "data-set order; an image folder is sorted by class!), random (a seeded random N) or "
        "stratified (every class in proportion, seeded).",
    ),
]
SubsetSeed = Annotated[
    int, typer.Option("--subset-seed", min=0, help="Seed of a random or stratified --subset.")
]


def set_threads(threads: int | None) -> None:
    """Apply ``--threads``."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def subset_size(
    given: int | None, default: int | None, available: int, option: str, what: str
) -> int | None:
    """How many of ``available`` items a command uses (``None``: all of them).

    A number the user gave (``given``) above ``available`` is refused with the size, never
    clamped; a default (``None`` given) is capped at ``available``; 0 means all.
    """
    from irad.checks import check_count

    if given is None:
        return None if default is None or default >= available else default
    if given == 0:
        return None
    return check_count(given, option, available, what)


def pick_subset(
    data: Any,
    given: int | None,
    default: int | None,
    option: str,
    method: str,
    seed: int,
    what: str = "images",
) -> Any:
    """``data`` cut to :func:`subset_size` items, picked by ``method`` (``--subset``)."""
    from irad.data import select_subset

    description = getattr(data, "description", None) or getattr(data, "root", "the data")
    n = subset_size(given, default, len(data), option, f"{what} in {description}")
    return select_subset(data, n, method, seed)
