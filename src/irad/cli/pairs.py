"""``irad prepare-pairs``: adversarial training pairs (clean, PGD) for stages 1 and 2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from irad.cli.options import DataDir, Device, Progress, Subset, Threads, set_threads

EPILOG = """\
Examples:

\b
  # CPU protocol: PGD-10 on ResNet-20 over all 50,000 training images (seeded order)
  export IRAD_DATA=../shared/data/cifar10
  irad prepare-pairs --surrogate resnet20 \\
      --weights ../shared/data/weights/resnet20-12fca82f.th \\
      --n 50000 --steps 10 --eps 8 --alpha 2 --out pairs/cifar10-r20-50k
\b
  # interrupted? run the same command again: finished chunks are kept
\b
  # paper setting (GPU): PGD-100 over the whole training set
  irad prepare-pairs --surrogate resnet18 --weights runs/r18/model --steps 100 \\
      --out pairs/cifar10-r18-pgd100 --device cuda
\b
  # your own data: an image folder (one sub-folder per class) and your classifier
  irad prepare-pairs -w runs/clf/model -d data/train --n 2000 --subset stratified \\
      --out pairs/mine
"""


def prepare_pairs(
    weights: Annotated[
        str,
        typer.Option(
            "--weights",
            "-w",
            help="Surrogate checkpoint: an irad prefix or an akamaster-format .th file.",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (resumable).")],
    surrogate: Annotated[
        str | None,
        typer.Option(
            "--surrogate",
            "-m",
            help="Surrogate architecture (resnet20, ...). Default: the checkpoint's record.",
        ),
    ] = None,
    n: Annotated[
        int | None,
        typer.Option(
            "--n", min=1, help="Attack N training images, picked by --subset (default: all)."
        ),
    ] = None,
    subset: Subset = "random",
    subset_seed: Annotated[
        int | None,
        typer.Option("--subset-seed", min=0, help="Seed of the subset (default: --seed)."),
    ] = None,
    steps: Annotated[int, typer.Option(min=1, help="PGD iterations (paper: 100).")] = 10,
    eps: Annotated[float, typer.Option(min=0.0, help="L-inf budget in /255.")] = 8.0,
    alpha: Annotated[float, typer.Option(min=0.0, help="PGD step in /255.")] = 2.0,
    seed: Annotated[int, typer.Option(min=0, help="Seeds the subset and PGD's random starts.")] = 0,
    chunk: Annotated[
        int, typer.Option(min=1, help="Images per chunk file (the unit of resumption).")
    ] = 1000,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per attack call.")] = 250,
    dataset: Annotated[
        str,
        typer.Option(
            "--dataset",
            "-d",
            help="cifar10, cifar100, an .npz file or an image folder (its chosen images are "
            "loaded into memory, up to $IRAD_MAX_MEMORY_GB, default 8).",
        ),
    ] = "cifar10",
    split: Annotated[str, typer.Option(help="Split to attack.")] = "train",
    data_dir: DataDir = None,
    device: Device = "cpu",
    threads: Threads = None,
    progress: Progress = True,
) -> None:
    """Craft PGD adversarial examples on a surrogate classifier and store (clean, adv) pairs.

    Writes OUT/manifest.json (configuration, surrogate sha256, data fingerprint, attack success
    rates before and after rounding to uint8) and OUT/chunks/*.safetensors (uint8 adversarial
    images, clipped to the eps-ball, with their data-set indices). The manifest names a data
    set given by path relative to OUT, so the pairs work from any directory; keep the data
    where it is (the clean images are read from it).
    """
    from irad.train.pairs import PairConfig, prepare_pairs

    set_threads(threads)
    config = PairConfig(
        eps=eps, alpha=alpha, steps=steps, seed=seed, chunk=chunk, batch_size=batch_size
    )
    manifest = prepare_pairs(
        weights,
        out,
        config,
        surrogate=surrogate,
        dataset=dataset,
        split=split,
        data_dir=data_dir,
        n=n,
        subset=subset,
        subset_seed=subset_seed,
        device=device,
        progress=progress,
    )
    t, data = manifest["totals"], manifest["data"]
    typer.echo(
        f"{t['n']} pairs in {out} (PGD-{steps}, eps {eps}/255, step {alpha}/255 on "
        f"{manifest['surrogate']['name']} over {data['description']}): surrogate accuracy "
        f"clean {100 * t['clean_accuracy']:.2f} %, adversarial "
        f"{100 * t['adv_accuracy_float']:.2f} % (float) / "
        f"{100 * t['adv_accuracy_rounded']:.2f} % (stored uint8); "
        f"{t['flipped_by_rounding']} predictions changed by rounding; "
        f"max L-inf {t['max_linf_rounded']:.3f}/255"
    )
    typer.echo(json.dumps(t), err=True)


def register(app: typer.Typer) -> None:
    """Add ``prepare-pairs`` to ``app``."""
    app.command("prepare-pairs", epilog=EPILOG)(prepare_pairs)
