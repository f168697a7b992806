"""Options shared by the commands, declared once: their names, help texts and parsing."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

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
