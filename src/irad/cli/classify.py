"""``irad classify``: clean accuracy of a classifier on a data set."""

from __future__ import annotations

from typing import Annotated

import typer

from irad.cli.options import (
    DataDir,
    Device,
    JsonOut,
    Progress,
    Subset,
    SubsetSeed,
    Threads,
    set_threads,
)

EPILOG = """\
Examples:

\b
  # a published akamaster ResNet-56 (architecture from the file name)
  export IRAD_DATA=../shared/data/cifar10
  irad classify --weights resnet56-4bfd9763.th
\b
  # an irad checkpoint on the first 1000 test images, results to JSON
  irad classify -w runs/r20/model --n 1000 --threads 2 --json r20.json
\b
  # a seeded random subset of 500 training images, on a GPU
  irad classify -m resnet20 -w resnet20-12fca82f.th \\
      --split train --n 500 --subset random --device cuda
\b
  # your own classifier on 300 images of a folder sorted by class: every class in proportion
  irad classify -w runs/clf/model -d data/test --n 300 --subset stratified
"""


def classify(
    weights: Annotated[
        str,
        typer.Option(
            "--weights",
            "-w",
            help="Checkpoint: an irad .safetensors/.json prefix, or an akamaster-format .th file.",
        ),
    ],
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="Architecture (resnet20, resnet56, wrn-28-10, ...). Default: the checkpoint's "
            "own record, or the start of a .th file name.",
        ),
    ] = None,
    dataset: Annotated[
        str,
        typer.Option(
            "--dataset", "-d", help="cifar10, cifar100, an .npz file, or an image folder."
        ),
    ] = "cifar10",
    split: Annotated[str, typer.Option(help="Split of a named data set: test or train.")] = "test",
    data_dir: DataDir = None,
    n: Annotated[
        int | None,
        typer.Option("--n", min=1, help="Evaluate on N images only, picked by --subset."),
    ] = None,
    subset: Subset = "first",
    subset_seed: SubsetSeed = 0,
    seed: Annotated[
        int | None,
        typer.Option(
            min=0, help="With --n: a seeded random subset (--subset random --subset-seed S)."
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per forward pass.")] = 500,
    device: Device = "cpu",
    threads: Threads = None,
    json_out: JsonOut = None,
    progress: Progress = True,
) -> None:
    """Measure the clean (top-1) accuracy of a classifier on a data set.

    Prints one summary line: accuracy, counts, time and images per second.
    """
    from irad.measure import classify_dataset

    if seed is not None and n is None:
        raise typer.BadParameter(
            "--seed picks a random subset, so it needs --n", param_hint="--seed"
        )
    if seed is not None and subset == "first":
        subset = "random"  # --seed alone: a seeded random subset, as before --subset existed
    if seed is None and subset != "first" and n is not None:
        seed = subset_seed
    set_threads(threads)
    run = classify_dataset(
        weights,
        arch=model,
        dataset=dataset,
        split=split,
        data_dir=data_dir,
        n=n,
        seed=seed,
        subset=subset,
        batch_size=batch_size,
        device=device,
        progress=progress,
        json_out=json_out,
    )
    typer.echo(run.line())
    if json_out is not None:
        typer.echo(f"wrote {json_out}")


def register(app: typer.Typer) -> None:
    """Add ``irad classify`` to ``app``."""
    app.command("classify", epilog=EPILOG, no_args_is_help=True)(classify)
