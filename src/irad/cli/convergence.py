"""``irad convergence``: does the adaptive attack on a random defense converge? (RA against
PGD steps and EOT samples, scored over re-drawn seeds; a thin command over
:func:`irad.evaluate.random_defense.convergence_study`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from irad.cli.options import DataDir, Device, Progress, Threads, set_threads

EPILOG = """\
Examples:

\b
  # IRAD+DiffPure (t = 20) on the first 32 CIFAR-10 test images, ResNet-56 victim
  export IRAD_DATA=../shared/data/cifar10
  irad convergence --defense "irad+diffpure:t=20" \\
      --classifier ../shared/data/weights/resnet56-4bfd9763.th --n 32 --out results/conv-ird20
"""


def _ints(text: str, name: str) -> list[int]:
    from irad.errors import InputError

    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"{name} takes comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise InputError(f"{name} takes positive integers, got {text!r}")
    return values


def convergence(
    defense: Annotated[str, typer.Option(help="Defense spec, e.g. irad+diffpure:t=20.")],
    classifier: Annotated[str, typer.Option(help="Victim checkpoint (or bundled name).")],
    n: Annotated[int, typer.Option("--n", min=1, help="The first N test images.")] = 32,
    steps: Annotated[str, typer.Option(help="PGD steps of the steps curve.")] = "10,20,50",
    eot: Annotated[str, typer.Option(help="EOT samples of the EOT curve.")] = "1,4,16",
    fixed_eot: Annotated[int, typer.Option(min=1, help="EOT samples of the steps curve.")] = 4,
    fixed_steps: Annotated[int, typer.Option(min=1, help="PGD steps of the EOT curve.")] = 20,
    eps: Annotated[float, typer.Option(help="L-inf budget in units of 1/255.")] = 8.0,
    alpha: Annotated[float, typer.Option(help="PGD step in units of 1/255.")] = 2.0,
    draws: Annotated[int, typer.Option(min=1, help="Re-drawn seeds when scoring.")] = 3,
    seed: Annotated[int, typer.Option(min=0, help="Attack seed.")] = 0,
    batch_size: Annotated[int, typer.Option(min=1)] = 32,
    dataset: Annotated[str, typer.Option("--dataset", "-d")] = "cifar10",
    data_dir: DataDir = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder.")] = Path(
        "results/convergence"
    ),
    threads: Threads = None,
    device: Device = "cpu",
    progress: Progress = True,
) -> None:
    """RA of a (random) defense under adaptive EOT-PGD against attack steps and EOT samples,
    each scored over re-drawn seeds (mean ± std and per-image worst case). Writes
    OUT/convergence.{json,md,png,svg}; a killed run resumes from OUT/runs."""
    from irad.checks import check_count
    from irad.data import load_dataset
    from irad.evaluate.random_defense import run_convergence
    from irad.evaluate.specs import check_eps

    set_threads(threads)
    eps_255, alpha_255 = check_eps(eps, "--eps"), check_eps(alpha, "--alpha")
    steps_list, eot_list = _ints(steps, "--steps"), _ints(eot, "--eot")
    data = load_dataset(dataset, "test", data_dir)
    check_count(n, "--n", len(data), f"images of {data.description}")
    x, y = data.subset(n).tensors()
    _, text = run_convergence(
        defense, classifier, x, y, out,
        description=data.description,
        log=(lambda line: typer.echo(line, err=True)) if progress else None,
        steps=steps_list, eot=eot_list, fixed_eot=fixed_eot, fixed_steps=fixed_steps,
        eps=eps_255 / 255, alpha=alpha_255 / 255,
        score_seeds=[1001 + i for i in range(draws)], seed=seed, batch_size=batch_size,
        device=device,
    )  # fmt: skip
    typer.echo(text)


def register(app: typer.Typer) -> None:
    app.command("convergence", epilog=EPILOG)(convergence)
