"""``irad quality``: reconstruction quality of the implicit representation (Table 17)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from irad.cli.options import DataDir, Device, JsonOut, Progress, Threads, set_threads

EPILOG = """\
Examples:

\b
  # Table 17 on the first 1000 stored pairs
  export IRAD_DATA=../shared/data/cifar10
  irad quality --recons runs/inr-cpu --pairs pairs/cifar10-r20 --n 1000
\b
  # the representation inside an IRAD checkpoint, results to JSON
  irad quality --recons runs/irad-cpu/model --pairs pairs/cifar10-r20 --json q.json
"""


def quality(
    recons: Annotated[
        str,
        typer.Option(
            "--recons",
            "-r",
            help="Implicit-representation checkpoint (folder, prefix, IRAD checkpoint, or a "
            "bundled name).",
        ),
    ],
    pairs: Annotated[Path, typer.Option("--pairs", "-p", help="Folder from `irad prepare-pairs`.")],
    n: Annotated[
        int | None,
        typer.Option("--n", min=1, help="Use the first N pairs (default: 1000, or all if fewer)."),
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per batch.")] = 100,
    data_dir: DataDir = None,
    radius: Annotated[
        float | None,
        typer.Option(help="Low-frequency disc radius in FFT bins (default: min(H, W) / 8)."),
    ] = None,
    device: Device = "cpu",
    threads: Threads = None,
    json_out: JsonOut = None,
    progress: Progress = True,
) -> None:
    """PSNR, SSIM, low/high-frequency FFT loss and (if available) LPIPS of clean vs adv and of
    clean vs RECONS(adv), in Table 17's layout."""
    from irad.evaluate.quality import format_quality_table
    from irad.measure import reconstruction_quality

    set_threads(threads)
    record = reconstruction_quality(
        recons,
        pairs,
        n=n,
        batch_size=batch_size,
        data_dir=data_dir,
        radius=radius,
        device=device,
        progress=progress,
        json_out=json_out,
    )
    typer.echo(record["lpips"], err=True)
    typer.echo(f"{record['n']} pairs from {pairs}, reconstruction {record['recons_source']}")
    typer.echo(format_quality_table(record))


def register(app: typer.Typer) -> None:
    """Add ``quality`` to ``app``."""
    app.command("quality", epilog=EPILOG)(quality)
