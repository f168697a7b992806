"""``irad convert-official``: import the authors' released checkpoints (tsingqguo/irad)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

EPILOG = """\
Examples:

\b
  # the official CIFAR-10 release -> an irad IRAD checkpoint folder
  irad convert-official --reconstruction pretrained/cifar10/Reconstruction.pt \\
      --samplenet pretrained/cifar10/SampleNet.pt --out weights/irad-official-cifar10
  irad purify --defense irad:checkpoint=weights/irad-official-cifar10 \\
      --input images/ --output purified/
\b
  # Reconstruction.pt alone (or a yinboc/liif edsr-baseline-liif.pth): the DISCO-style defense
  irad convert-official --reconstruction Reconstruction.pt --out weights/recons-official
  irad evaluate -w resnet56-4bfd9763.th --defense recons:checkpoint=weights/recons-official \\
      --out results/recons-official
\b
Files are read with torch.load(weights_only=True): a file that holds pickled Python objects
other than tensors is refused, never unpickled. Sizes are inferred from the tensors; the
result reproduces the official conventions (normalised coordinates, shifts in those units,
SampleNet's encoder fed x in [0, 1]) and loads with IRAD.from_pretrained(OUT).
"""


def convert_official(
    reconstruction: Annotated[
        Path,
        typer.Option(
            "--reconstruction",
            "-r",
            help="The official Reconstruction.pt ({'model': {'name', 'args', 'sd'}}, LIIF).",
        ),
    ],
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Output folder: model.safetensors + model.json."),
    ],
    samplenet: Annotated[
        Path | None,
        typer.Option(
            "--samplenet",
            "-s",
            help="The official SampleNet.pt (state_dict with encoder.* and imnet.layers.*). "
            "Without it, only the reconstruction (DISCO-style defense) is converted.",
        ),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace a checkpoint already in --out.")] = False,
) -> None:
    """Convert the authors' Reconstruction.pt (+ SampleNet.pt) into an irad checkpoint."""
    from irad.defenses.official import convert_official as convert
    from irad.errors import InputError
    from irad.utils.io import check_writable_folder

    existing = out / "model.safetensors"
    if existing.exists() and not overwrite:
        raise InputError(f"{existing} already exists; pass --overwrite to replace it")
    check_writable_folder(out, "--out")
    report = convert(reconstruction, samplenet, out)
    typer.echo(report.summary())
    loader = "IRAD" if samplenet is not None else "ImplicitReconstruction"
    name = "irad" if samplenet is not None else "recons"
    typer.echo(
        f"load it with {loader}.from_pretrained({str(out)!r}) or --defense {name}:checkpoint={out}"
    )


def register(app: typer.Typer) -> None:
    """Add ``convert-official`` to ``app``."""
    app.command("convert-official", epilog=EPILOG, no_args_is_help=True)(convert_official)
