"""``irad demo``: the bundled IRAD in front of the bundled classifier, attacked two ways
(a thin command over :func:`irad.evaluate.demo.run_demo`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from irad.cli.options import DataDir, Progress, Threads

EPILOG = """\
Examples:

\b
  # the default: 200 CIFAR-10 test images, APGD-CE (20 steps); about 1 minute on 2 CPU cores
  # (AVX2); --n 100 halves it
  export IRAD_DATA=../shared/data/cifar10
  irad demo
\b
  # the full measure: standard AutoAttack, oblivious and adaptive, on 1000 images (hours on a CPU)
  irad demo --attack autoattack --n 1000 --out results/demo-aa
\b
  # with the diffusion purifiers (DiffPure and IRAD+DiffPure at t = 20)
  irad demo --diffusion --out results/demo-diffusion
"""


def demo(
    n: Annotated[int, typer.Option("--n", min=1, help="First N CIFAR-10 test images.")] = 200,
    attack: Annotated[
        str,
        typer.Option(
            help="Attack spec for both threat models: apgd:steps=20 (default; 5 steps leave "
            "a few % under the adaptive threat, 20 take every defense here to about 0), "
            "autoattack (standard, 100 iterations per component), pgd:steps=20, ... "
            "(eps=8 means 8/255)"
        ),
    ] = "apgd:steps=20",
    classifier: Annotated[
        str,
        typer.Option(help="Classifier checkpoint (default: the bundled ResNet-20, 'cifar10')."),
    ] = "cifar10",
    weights: Annotated[
        str,
        typer.Option(help="IRAD checkpoint (default: the bundled cpu-preset weights, 'cifar10')."),
    ] = "cifar10",
    adaptive: Annotated[
        bool, typer.Option(help="Also run the adaptive attack through each defense.")
    ] = True,
    diffusion: Annotated[
        bool,
        typer.Option(
            "--diffusion",
            help="Add DiffPure and IRAD+DiffPure (random: EOT in the adaptive attack, 3 draws "
            "when scoring; several minutes more on a CPU).",
        ),
    ] = False,
    diffusion_weights: Annotated[
        str, typer.Option(help="Diffusion checkpoint for --diffusion (default: bundled).")
    ] = "cifar10",
    diffusion_t: Annotated[
        int, typer.Option(min=1, max=1000, help="DiffPure's diffusion steps for --diffusion.")
    ] = 20,
    eot_samples: Annotated[
        int, typer.Option(min=1, help="EOT draws per gradient against a random defense.")
    ] = 4,
    data_dir: DataDir = None,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for the results (JSON, CSV, Markdown).")
    ] = Path("results/demo"),
    cache_dir: Annotated[
        Path | None,
        typer.Option(help="Adversarial-image cache (default: $IRAD_CACHE or ~/.cache/irad)."),
    ] = None,
    seed: Annotated[int, typer.Option(min=0, help="Attack seed.")] = 0,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per attack batch.")] = 100,
    threads: Threads = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "cpu",
    overwrite: Annotated[
        bool,
        typer.Option(help="Replace the results of other settings in --out (else refused)."),
    ] = False,
    progress: Progress = True,
) -> None:
    """Evaluate the bundled IRAD (and the DISCO-style reconstruction it contains) in front of
    the bundled classifier: SA, and RA under an oblivious and an adaptive attack, in one table.

    Everything is offline: the weights ship with the package, CIFAR-10 is read from
    --data-dir / $IRAD_DATA (or downloaded once, with checksums, where the network allows).
    """
    from irad.checks import check_count
    from irad.data import load_dataset
    from irad.evaluate import AttackSpec
    from irad.evaluate.demo import run_demo

    AttackSpec.parse(attack)  # a bad spec (or eps=0.03 for 8/255) fails before any loading
    data = load_dataset("cifar10", "test", data_dir)
    check_count(n, "--n", len(data), "CIFAR-10 test images")
    result = run_demo(
        data,
        n=n,
        attack=attack,
        classifier=classifier,
        weights=weights,
        adaptive=adaptive,
        diffusion=diffusion_weights if diffusion else None,
        diffusion_t=diffusion_t,
        eot_samples=eot_samples,
        out_dir=out,
        overwrite=overwrite,
        cache_dir=cache_dir,
        seed=seed,
        batch_size=batch_size,
        threads=threads,
        device=device,
        progress=progress,
        log=lambda line: typer.echo(line, err=True),
    )
    typer.echo(result.to_markdown())
    typer.echo(f"wrote {out / 'demo.md'}, {out / 'oblivious'}, {out / 'adaptive'}", err=True)


def register(app: typer.Typer) -> None:
    """Add ``irad demo`` to ``app``."""
    app.command("demo", epilog=EPILOG)(demo)
