"""``irad folder-to-npz``: an image folder (one sub-folder per class) in the ``.npz`` layout."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

EPILOG = """\
Examples:

\b
  # data/train/<class>/*.png -> npz/train.npz, data/test/... -> npz/test.npz
  irad folder-to-npz --input data/train --out npz/train.npz
  irad folder-to-npz --input data/test --out npz/test.npz
  irad classify -w runs/clf/model -d npz --split test    # npz/{split}.npz
\b
  # images of mixed sizes: resize the shorter side to 72, center-crop 64 x 64
  irad folder-to-npz --input photos/ --out photos.npz --image-size 64 --resize 72
\b
The file holds x uint8 [N, H, W, 3] (RGB), y int64 [N] and classes (the sorted sub-folder
names: label k is classes[k], empty sub-folders included). Every command that takes --dataset
reads the folder itself too; the npz loads faster and does not change when the folder does.
"""


def folder_to_npz(
    input_dir: Annotated[
        Path,
        typer.Option("--input", "-i", help="Image folder with one sub-folder per class."),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="The .npz file to write.")],
    image_size: Annotated[
        int | None,
        typer.Option(min=1, help="Resize and center-crop every image to S x S (mixed sizes)."),
    ] = None,
    resize: Annotated[
        int | None,
        typer.Option(min=1, help="With --image-size: the shorter side before the crop."),
    ] = None,
) -> None:
    """Convert an image folder to the .npz layout: x uint8 [N,H,W,3], y int [N], classes.

    The pixels are held in memory while writing; a folder that would take more than
    $IRAD_MAX_MEMORY_GB (default 8) GiB is refused before any image is read.
    """
    from irad.data import folder_to_npz as convert
    from irad.errors import InputError
    from irad.utils.io import check_writable_file

    if out.suffix.lower() != ".npz":
        raise InputError(f"--out {out}: give a file name ending in .npz")
    check_writable_file(out, "--out")
    data = convert(input_dir, out, image_size=image_size, resize=resize)
    _, h, w = data.image_shape
    typer.echo(
        f"wrote {out}: {len(data)} images {h}x{w}, {data.num_classes} classes "
        f"({', '.join(data.classes[:10])}{', ...' if data.num_classes > 10 else ''})"
    )


def register(app: typer.Typer) -> None:
    """Add ``folder-to-npz`` to ``app``."""
    app.command("folder-to-npz", epilog=EPILOG, no_args_is_help=True)(folder_to_npz)
