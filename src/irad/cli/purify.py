"""``irad purify``: run a defense over a folder of images (any sizes) and write PNGs.

The engine is :func:`irad.purify.purify_folder`; the command checks the folders, builds the
defense from its spec and prints the summary.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from irad.cli.options import Device, Progress, Threads, set_threads

EPILOG = """\
Examples:

\b
  # the bundled CIFAR-10 IRAD (same as --defense irad:checkpoint=cifar10): for 32x32
  # CIFAR-like images only; on other sizes it warns (train your own: docs/own-data.md)
  irad purify --defense irad --input images/ --output purified/
\b
  # your own IRAD checkpoint (a folder from train-samplenet or convert-official), on a GPU
  irad purify --defense irad:checkpoint=runs/irad-cpu --input adv/ --output pure/ \\
      --device cuda --batch-size 64
\b
  # any registered defense spec works
  irad purify --defense jpeg:quality=75 --input images/ --output jpeg75/
  irad purify --defense recons:checkpoint=runs/inr-cpu --input images/ --output recons/
\b
Every .png/.jpg/.jpeg/.bmp/.webp under --input (recursively, hidden files and folders skipped)
is read as RGB at its own size; images of equal size are batched together. Outputs are RGB PNGs
at the same relative paths under --output, of the input's bit depth (16-bit grey PNGs give
16-bit PNGs). Rerunning skips images already written (--overwrite redoes them).
"""


def purify(
    input_dir: Annotated[
        Path, typer.Option("--input", "-i", help="Folder of images (read recursively).")
    ],
    output_dir: Annotated[
        Path, typer.Option("--output", "-o", help="Folder for the purified PNGs.")
    ],
    defense: Annotated[
        str,
        typer.Option(
            "--defense",
            "-d",
            help="Defense spec: irad, irad:checkpoint=DIR, recons:checkpoint=DIR, "
            "jpeg:quality=75, ... (default: the bundled IRAD, trained on CIFAR-10 32x32 images; "
            "a warning says so for other sizes).",
        ),
    ] = "irad",
    device: Device = "cpu",
    batch_size: Annotated[
        int, typer.Option(min=1, help="Images per batch (only equal sizes are batched).")
    ] = 16,
    overwrite: Annotated[
        bool, typer.Option(help="Redo images whose output already exists.")
    ] = False,
    seed: Annotated[int, typer.Option(min=0, help="Seed for random defenses.")] = 0,
    threads: Threads = None,
    progress: Progress = True,
) -> None:
    """Purify every image in a folder with a defense (IRAD by default) and write PNGs."""
    from irad.purify import check_folders, purify_folder
    from irad.utils.env import resolve_device

    set_threads(threads)
    dev = resolve_device(device)
    check_folders(input_dir, output_dir)  # before loading a (possibly large) model
    summary = purify_folder(
        defense,
        input_dir,
        output_dir,
        batch_size=batch_size,
        device=dev,
        overwrite=overwrite,
        progress=progress,
        seed=seed,
    )
    typer.echo(f"{defense}: {summary.line()}")


def register(app: typer.Typer) -> None:
    """Add ``purify`` to ``app``."""
    app.command("purify", epilog=EPILOG, no_args_is_help=True)(purify)
