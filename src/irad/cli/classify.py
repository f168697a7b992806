"""``irad classify``: clean accuracy of a classifier on a data set."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import torch
import typer

from irad.errors import InputError

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
      --split train --n 500 --seed 0 --device cuda
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
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Where named data sets live (default: $IRAD_DATA, else ~/.cache/irad)."),
    ] = None,
    n: Annotated[
        int | None,
        typer.Option("--n", min=1, help="Evaluate on N images only (the first N unless --seed)."),
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="With --n: draw a seeded random subset instead.")
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per forward pass.")] = 500,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1, mps, ...")] = "cpu",
    threads: Annotated[
        int | None, typer.Option(min=1, help="CPU threads for torch (default: torch's choice).")
    ] = None,
    json_out: Annotated[
        Path | None,
        typer.Option("--json", help="Also write the result, settings and environment here."),
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Measure the clean (top-1) accuracy of a classifier on a data set.

    Prints one summary line: accuracy, counts, time and images per second.
    """
    from irad.data import load_dataset
    from irad.evaluate.accuracy import accuracy
    from irad.models import load_classifier, model_fingerprint
    from irad.utils.env import environment_info
    from irad.utils.io import atomic_write_json

    if seed is not None and n is None:
        raise typer.BadParameter(
            "--seed picks a random subset, so it needs --n", param_hint="--seed"
        )
    dev = _device(device)
    if threads is not None:
        torch.set_num_threads(threads)

    clf = load_classifier(weights, arch=model)
    data = load_dataset(dataset, split, data_dir)
    if n is not None:
        data = data.subset(min(n, len(data)), seed=seed)
    _check_classes(clf.num_classes, getattr(data, "classes", None), data.name)

    result = accuracy(clf, data, batch_size=batch_size, device=dev, progress=progress)
    label = getattr(data, "description", None) or data.name
    typer.echo(
        f"{clf.name} on {label} ({result.total} images): accuracy {result.percent:.2f} % "
        f"({result.correct}/{result.total}) in {result.seconds:.1f} s, "
        f"{result.images_per_second:.0f} images/s"
    )
    if json_out is not None:
        record: dict[str, Any] = {
            "command": "classify",
            "model": clf.config,
            "weights": str(weights),
            "model_fingerprint": model_fingerprint(clf),
            "dataset": dataset,
            "split": split,
            "subset": getattr(data, "description", None),
            "n": n,
            "seed": seed,
            "batch_size": batch_size,
            **result.to_dict(),
            "accuracy_percent": result.percent,
            "environment": environment_info(dev),
        }
        atomic_write_json(json_out, record)
        typer.echo(f"wrote {json_out}")


def _check_classes(model_classes: int | None, classes: list[str] | None, data: str) -> None:
    """Labels beyond the model's outputs can never be right: refuse rather than under-report."""
    if model_classes is None or classes is None:
        return
    if model_classes < len(classes):
        raise InputError(
            f"the classifier predicts {model_classes} classes but {data} has {len(classes)}; "
            "pass the matching --dataset or checkpoint"
        )
    if model_classes > len(classes):
        typer.echo(
            f"note: the classifier predicts {model_classes} classes, {data} has {len(classes)}",
            err=True,
        )


def _device(name: str) -> torch.device:
    """Parse ``--device`` and check that it exists here, with a usable message if not."""
    try:
        dev = torch.device(name)
    except RuntimeError as err:
        raise InputError(
            f"--device {name!r} is not a device name ({err}); try cpu or cuda"
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(
            f"--device {name}: CUDA is not available on this machine; use --device cpu"
        )
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"--device {name}: MPS is not available on this machine; use --device cpu")
    return dev


def register(app: typer.Typer) -> None:
    """Add ``irad classify`` to ``app``."""
    app.command("classify", epilog=EPILOG, no_args_is_help=True)(classify)
