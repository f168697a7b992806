"""``irad reproduce``: one command per table of the paper, our figures beside the paper's;
``irad reproduce all``: every stage, from the training pairs to the results page."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from irad.cli.options import DataDir, Progress, Threads

EPILOG = """
Examples:

  # Table 1 + Table 2's baseline rows (CPU protocol: ResNet-56, first 1000 test images)
  export IRAD_DATA=../shared/data/cifar10
  irad reproduce table1 -w ../shared/data/weights/resnet56-4bfd9763.th --out results/table1

  # Table 2 with the bundled IRAD; Table 5 (full adaptive AutoAttack, first 200 images)
  irad reproduce table2 -w ../shared/data/weights/resnet56-4bfd9763.th --out results/table2
  irad reproduce table5 -w ../shared/data/weights/resnet56-4bfd9763.th --out results/table5

  # Table 10 / Fig. 4 (ten attacks, oblivious) and Table 13 (VMI-FGSM, VNI-FGSM, Admix)
  irad reproduce table10 -w ../shared/data/weights/resnet56-4bfd9763.th --out results/table10
  irad reproduce table13 -w ../shared/data/weights/resnet56-4bfd9763.th --out results/table13

  # the same on 2 processes (Gloo on CPU, NCCL on GPUs); '--' keeps torchrun off irad's flags
  torchrun --nproc_per_node 2 --no-python -- irad reproduce table10 \\
      -w ../shared/data/weights/resnet56-4bfd9763.th --threads 1 --out results/table10

  irad reproduce --list

  # every stage in dependency order (pairs, stage 1, stage 2, diffusion, STL, NRP, the tables,
  # the diffusion measurements, the analysis) into docs/results.md and docs/figures/;
  # finished stages are skipped, a killed run resumes. Run from the repository root.
  irad reproduce all -w ../shared/data/weights/resnet56-4bfd9763.th \\
      --surrogate ../shared/data/weights/resnet20-12fca82f.th --dry-run   # the commands
  irad reproduce all -w ../shared/data/weights/resnet56-4bfd9763.th \\
      --surrogate ../shared/data/weights/resnet20-12fca82f.th --threads 2

  # the smoke test: tiny sizes, bundled classifier, a few minutes; writes OUT/results.md
  irad reproduce all --quick --threads 1 --out /tmp/all-quick
"""


def reproduce(
    table: Annotated[str | None, typer.Argument(help="Table name, e.g. table1.")] = None,
    weights: Annotated[
        str | None, typer.Option("--weights", "-w", help="Victim classifier checkpoint.")
    ] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Victim architecture.")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Run folder.")] = None,
    protocol: Annotated[
        str,
        typer.Option(
            help="cpu (the first 1000 test images, 200 for table5) | paper (all) | custom. "
            "Explicit flags override it, and the record says which."
        ),
    ] = "cpu",
    n: Annotated[
        int | None,
        typer.Option(min=1, help="Evaluate the first N test images (default: the protocol's)."),
    ] = None,
    seed: Annotated[int, typer.Option(min=0, help="Base seed of attacks and random defenses.")] = 0,
    data_dir: DataDir = None,
    threads: Threads = None,
    device: Annotated[
        str | None,
        typer.Option(help="auto, cpu, cuda, cuda:N or mps (default: the protocol's, else cpu)."),
    ] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="Adversarial-image cache.")] = None,
    irad_weights: Annotated[
        str, typer.Option(help="IRAD checkpoint for the {irad} rows (default: the bundled one).")
    ] = "cifar10",
    runs: Annotated[
        Path, typer.Option(help="Folder of the stage-1 runs t7-<task> for table7.")
    ] = Path("runs"),
    stl_weights: Annotated[
        str, typer.Option(help="STL dictionary for the STL rows (irad train-stl's run folder).")
    ] = "cifar10",
    nrp_weights: Annotated[
        str, typer.Option(help="NRP purifier for the NRP rows (irad train-nrp's run folder).")
    ] = "cifar10",
    diffusion_weights: Annotated[
        str,
        typer.Option(help="Score model of the DiffPure rows (irad export-diffusion's output)."),
    ] = "cifar10",
    overwrite: Annotated[
        bool,
        typer.Option(help="Replace the results of another configuration in --out (else refused)."),
    ] = False,
    list_tables: Annotated[bool, typer.Option("--list", help="List the tables.")] = False,
    progress: Progress = True,
    quick: Annotated[
        bool, typer.Option(help="With 'all': tiny sizes, a smoke test; the docs stay untouched.")
    ] = False,
    surrogate: Annotated[
        str | None,
        typer.Option(
            help="With 'all': the classifier the pairs are crafted on and SampleNet trains "
            "through (default: the victim -w; the CPU protocol: resnet20-12fca82f.th)."
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="With 'all': print each stage's command and state; run nothing."
        ),
    ] = False,
) -> None:
    """Reproduce one of the paper's tables in our protocol, with the paper's figures beside ours.

    Writes OUT/comparison.md (the table) plus result.json / result.csv / table.md, resumable.

    'all' runs every stage as its own irad command, in dependency order: the training pairs,
    stage 1 (and Table 7's task runs), stage 2 (and Table 15's), the diffusion purifier, STL,
    NRP, tables 1-5, 7, 8, 10, 13, 15, the diffusion measurements and the analysis (Tables
    18-19, Figs. 5-6). Finished stages are skipped and interrupted trainings resumed; each
    table becomes a generated section of docs/results.md, the figures go to docs/figures/
    (--quick: OUT/results.md and OUT/figures/). Logs: OUT/logs/; record: OUT/pipeline.json.
    """
    from irad.checks import check_count
    from irad.data import load_dataset
    from irad.errors import ConfigError
    from irad.evaluate.reproduce import get_table, run_table, table_names
    from irad.models import load_classifier
    from irad.train.distributed import context_from_env

    if list_tables or table is None:
        for name in table_names():
            typer.echo(f"{name}: {get_table(name).title}")
        return
    if table == "all":  # every stage and the results page: irad.evaluate.results_page
        from irad.evaluate.results_page import reproduce_all

        if n is not None:
            raise ConfigError("--n does not apply to 'all': --quick sets the small sizes")
        summary = reproduce_all(
            weights, model, out, quick, seed, data_dir, threads, device,
            protocol=protocol, surrogate=surrogate, dry_run=dry_run, echo=typer.echo,
        )  # fmt: skip
        typer.echo(summary)
        return
    spec = get_table(table)
    if weights is None:
        raise ConfigError("--weights is required: the victim classifier checkpoint")
    out = out or Path("results") / table
    data = load_dataset("cifar10", "test", data_dir)
    if n is not None:
        check_count(n, "--n", len(data), "CIFAR-10 test images")
    classifier = load_classifier(weights, arch=model)
    main = context_from_env().is_main  # under torchrun only rank 0 prints
    if main:
        typer.echo(f"{spec.title}: {len(spec.rows)} rows, threat {spec.threat}", err=True)
    _, text = run_table(
        table,
        classifier,
        data,
        protocol=protocol,
        n=n,
        seed=seed,
        threads=threads,
        device=device,
        out_dir=out,
        overwrite=overwrite,
        cache_dir=cache_dir,
        progress=progress,
        metadata={"command": "reproduce", "weights": str(weights), "model": model},
        variables={
            "irad": irad_weights,
            "runs": str(runs),
            "stl": stl_weights,
            "nrp": nrp_weights,
            "diffusion": diffusion_weights,
        },
    )
    if main:
        typer.echo(text)
        typer.echo(f"wrote {out / 'comparison.md'}", err=True)


def register(app: typer.Typer) -> None:
    app.command("reproduce", epilog=EPILOG)(reproduce)
