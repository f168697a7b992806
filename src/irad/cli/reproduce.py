"""``irad reproduce``: one command per table of the paper, our figures beside the paper's."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

EPILOG = """
Examples:

  # Table 1 + Table 2's baseline rows (CPU protocol: ResNet-56, first 1000 test images)
  export IRAD_DATA=../shared/data/cifar10
  irad reproduce table1 -w ../shared/data/weights/resnet56-4bfd9763.th --out results/table1

  # Table 2 with the bundled IRAD; Table 5 (full adaptive AutoAttack, first 200 images)
  irad reproduce table2 -w ../shared/data/weights/resnet56-4bfd9763.th --out results/table2
  irad reproduce table5 -w ../shared/data/weights/resnet56-4bfd9763.th --out results/table5

  irad reproduce --list
"""


def reproduce(
    table: Annotated[str | None, typer.Argument(help="Table name, e.g. table1.")] = None,
    weights: Annotated[
        str | None, typer.Option("--weights", "-w", help="Victim classifier checkpoint.")
    ] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Victim architecture.")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Run folder.")] = None,
    n: Annotated[
        int | None,
        typer.Option(
            min=1, help="Evaluate the first N test images (default: the table's, 1000; table5 200)."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Base seed of attacks and random defenses.")] = 0,
    data_dir: Annotated[Path | None, typer.Option(help="Data folder (default $IRAD_DATA).")] = None,
    threads: Annotated[int, typer.Option(min=1, help="torch CPU threads.")] = 2,
    device: Annotated[str, typer.Option(help="cpu, cuda, ...")] = "cpu",
    cache_dir: Annotated[Path | None, typer.Option(help="Adversarial-image cache.")] = None,
    irad_weights: Annotated[
        str, typer.Option(help="IRAD checkpoint for the {irad} rows (default: the bundled one).")
    ] = "cifar10",
    runs: Annotated[
        Path, typer.Option(help="Folder of the stage-1 runs t7-<task> for table7.")
    ] = Path("runs"),
    list_tables: Annotated[bool, typer.Option("--list", help="List the tables.")] = False,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Reproduce one of the paper's tables in our protocol, with the paper's figures beside ours.

    Writes OUT/comparison.md (the table) plus result.json / result.csv / table.md, resumable.
    """
    from irad.data import load_dataset
    from irad.errors import ConfigError
    from irad.evaluate.reproduce import get_table, run_table, table_names
    from irad.evaluate.specs import EvaluationConfig
    from irad.models import load_classifier

    if list_tables or table is None:
        for name in table_names():
            typer.echo(f"{name}: {get_table(name).title}")
        return
    spec = get_table(table)
    if weights is None:
        raise ConfigError("--weights is required: the victim classifier checkpoint")
    out = out or Path("results") / table
    protocol = "cpu" if n is None or n == spec.default_n else "custom"
    n = n or spec.default_n
    config = EvaluationConfig.cpu_protocol(
        n=n, seed=seed, threads=threads, device=device, protocol=protocol
    )
    classifier = load_classifier(weights, arch=model)
    data = load_dataset("cifar10", "test", data_dir)
    typer.echo(f"{spec.title}: {len(spec.rows)} rows, {n} images, threat {spec.threat}", err=True)
    _, text = run_table(
        table,
        classifier,
        data,
        config=config,
        out_dir=out,
        cache_dir=cache_dir,
        progress=progress,
        metadata={"command": "reproduce", "weights": str(weights), "model": model},
        variables={"irad": irad_weights, "runs": str(runs)},
    )
    typer.echo(text)
    typer.echo(f"wrote {out / 'comparison.md'}", err=True)


def register(app: typer.Typer) -> None:
    app.command("reproduce", epilog=EPILOG)(reproduce)
