"""``irad convergence``: does the adaptive attack on a random defense converge? (RA against
PGD steps and EOT samples, scored over re-drawn seeds; a thin command over
:func:`irad.evaluate.random_defense.convergence_study`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from irad.cli.options import DataDir, Progress, Threads

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
    progress: Progress = True,
) -> None:
    """RA of a (random) defense under adaptive EOT-PGD against attack steps and EOT samples,
    each scored over re-drawn seeds (mean ± std and per-image worst case). Writes
    OUT/convergence.{json,md,png,svg}; a killed run resumes from OUT/runs."""
    import torch

    from irad.checks import check_count
    from irad.data import load_dataset
    from irad.defenses import build_defense_spec
    from irad.evaluate.plots import matplotlib_missing, plot_convergence
    from irad.evaluate.random_defense import convergence_study
    from irad.evaluate.specs import check_eps
    from irad.models import load_classifier
    from irad.utils.env import environment_info
    from irad.utils.io import atomic_write_json, atomic_write_text
    from irad.utils.lock import RunLock

    if threads is not None:
        torch.set_num_threads(threads)
    eps_255, alpha_255 = check_eps(eps, "--eps"), check_eps(alpha, "--alpha")
    steps_list, eot_list = _ints(steps, "--steps"), _ints(eot, "--eot")
    data = load_dataset(dataset, "test", data_dir)
    check_count(n, "--n", len(data), f"images of {data.description}")
    x, y = data.subset(n).tensors()
    model = build_defense_spec(defense)
    victim = load_classifier(classifier).eval()
    with RunLock(out, purpose="irad convergence"):
        study = convergence_study(
            model, victim, x, y,
            steps=steps_list, eot=eot_list, fixed_eot=fixed_eot, fixed_steps=fixed_steps,
            eps=eps_255 / 255, alpha=alpha_255 / 255,
            score_seeds=[1001 + i for i in range(draws)], seed=seed, batch_size=batch_size,
            progress=(lambda line: typer.echo(line, err=True)) if progress else None,
            run_dir=out / "runs",
        )  # fmt: skip
        record = {
            "command": "convergence",
            "defense_spec": defense,
            "classifier": classifier,
            "dataset": data.description,
            **study.to_dict(),
            "levelled_off": study.levelled_off(),
            "environment": environment_info("cpu"),
        }
        atomic_write_json(out / "convergence.json", record)
        text = (
            f"Adaptive EOT-PGD against `{defense}` + `{classifier}`: first {n} images of "
            f"{data.description}, eps {eps_255:g}/255, step {alpha_255:g}/255, seed {seed}, "
            f"scored over {draws} re-drawn seeds.\n\n{study.to_markdown()}\n"
        )
        atomic_write_text(out / "convergence.md", text)
        figures = plot_convergence(record, out / "convergence")
    typer.echo(text)
    typer.echo(
        f"wrote {out / 'convergence.json'}, {out / 'convergence.md'}"
        + (f", {', '.join(str(p) for p in figures)}" if figures else f" ({matplotlib_missing()})"),
        err=True,
    )


def register(app: typer.Typer) -> None:
    app.command("convergence", epilog=EPILOG)(convergence)
