"""``irad evaluate``: SA / RA / Avg / cost of defenses under attacks, in the paper's layout."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from irad.cli.options import DataDir, Progress, Subset, SubsetSeed, Threads
from irad.errors import ConfigError

EPILOG = """\
Examples:

\b
  # the CPU protocol: ResNet-56, first 1000 CIFAR-10 test images, oblivious AutoAttack + PGD-20
  export IRAD_DATA=../shared/data/cifar10
  irad evaluate -m resnet56 -w resnet56-4bfd9763.th \\
      --defense none --defense jpeg:quality=75 \\
      --attack autoattack --attack pgd:steps=20 --threat oblivious --out results/oblivious
\b
  # the paper's BPDA setting (bpda-pgd = PGD, 10 steps of 1/255, no random start), 200 images
  irad evaluate -w resnet56-4bfd9763.th --defense bit-depth:bits=4 \\
      --attack bpda-pgd --attack bpda-pgd-strong --threat bpda --n 200 --out results/bpda
\b
  # full adaptive AutoAttack with EOT on a random defense, with the sanity checks
  irad evaluate -w resnet56-4bfd9763.th --defense randomization \\
      --attack autoattack --threat adaptive --n 200 --sanity --out results/adaptive
\b
  # RA against eps for every defense (each attack at 2, 4, 8 and 16/255), and against steps
  irad evaluate -w resnet56-4bfd9763.th --defense none --defense jpeg:quality=75 \\
      --attack pgd:steps=20 --eps 2,4,8,16 --out results/eps-curve
  irad evaluate -w resnet56-4bfd9763.th --defense none --attack pgd --steps 5,10,20,50 \\
      --out results/steps-curve
\b
  # the same evaluation on 2 processes (CPU: gloo; GPUs: nccl, one per process), same figures
  torchrun --nproc_per_node 2 --no-python irad evaluate -w resnet56-4bfd9763.th \\
      --defense jpeg:quality=75 --attack pgd:steps=20 --threads 1 --out results/two-procs
\b
Specs are name:key=value,key=value; eps and step sizes are in /255 (eps=4 means 4/255).
Adversarial images are cached (--cache-dir, verified when read), and every finished (defense,
attack, batch) is saved under --out/partials: rerun the same command to resume after a crash.
A run folder holds one evaluation: another configuration is refused unless --overwrite.
"""


def evaluate(
    weights: Annotated[
        str,
        typer.Option(
            "--weights",
            "-w",
            help="Classifier checkpoint: an irad .safetensors/.json prefix or an akamaster .th.",
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", help="Run folder: result.json, result.csv, table.md, partials/."
        ),
    ],
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="Classifier architecture (resnet56, ...). Default: from the checkpoint.",
        ),
    ] = None,
    defense: Annotated[
        list[str] | None,
        typer.Option(
            "--defense",
            help="Defense spec, repeatable: none, jpeg:quality=75, bit-depth:bits=4, ... "
            "[default: none]",
        ),
    ] = None,
    attack: Annotated[
        list[str] | None,
        typer.Option(
            "--attack",
            "-a",
            help="Attack spec, repeatable: autoattack, pgd:steps=20,alpha=2, square, bpda-pgd "
            "(the paper's BPDA attack), ... [default: autoattack]",
        ),
    ] = None,
    threat: Annotated[
        str, typer.Option(help="oblivious | bpda | bpda-eot | adaptive.")
    ] = "oblivious",
    eps: Annotated[
        str,
        typer.Option(
            help="L∞ budget in units of 1/255 (8 means 8/255) for attacks that give no eps=; "
            "several, comma-separated (2,4,8,16), run every attack at each and add RA-against-eps "
            "curves (tables, and figures with matplotlib)."
        ),
    ] = "8",
    steps: Annotated[
        str | None,
        typer.Option(
            help="Attack steps, comma-separated (5,10,20,50): run every attack that has steps at "
            "each and add RA-against-steps curves."
        ),
    ] = None,
    protocol: Annotated[
        str,
        typer.Option(
            help="cpu (n 1000, adaptive 200, batch 100, 2 threads) | paper (all images) | "
            "custom. Explicit flags override it, and the record says which."
        ),
    ] = "cpu",
    dataset: Annotated[
        str, typer.Option("--dataset", "-d", help="cifar10, cifar100, an .npz, a folder.")
    ] = "cifar10",
    split: Annotated[str, typer.Option(help="Split of a named data set.")] = "test",
    data_dir: DataDir = None,
    n: Annotated[
        int | None, typer.Option("--n", min=1, help="Evaluate N images, picked by --subset.")
    ] = None,
    subset: Subset = "first",
    subset_seed: SubsetSeed = 0,
    seed: Annotated[int, typer.Option(min=0, help="Base seed of attacks and random defenses.")] = 0,
    batch_size: Annotated[
        int | None, typer.Option(min=1, help="Images per attack batch (part of the cache key).")
    ] = None,
    eot_samples: Annotated[
        int,
        typer.Option(
            min=1, help="EOT draws per gradient for random defenses (threats that use EOT)."
        ),
    ] = 10,
    draws: Annotated[
        int, typer.Option(min=1, help="Scoring passes per image for random defenses (averaged).")
    ] = 1,
    cost_batch_size: Annotated[
        int | None, typer.Option(min=1, help="Batch size of the cost timing.")
    ] = None,
    cost_repeats: Annotated[
        int, typer.Option(min=0, help="Timed batches for the cost (0: skip timing).")
    ] = 5,
    threads: Threads = None,
    device: Annotated[
        str | None,
        typer.Option(help="auto, cpu, cuda, cuda:N or mps (default: the protocol's, else cpu)."),
    ] = None,
    cache_dir: Annotated[
        Path | None,
        typer.Option(help="Adversarial-image cache (default: $IRAD_CACHE or ~/.cache/irad)."),
    ] = None,
    cache: Annotated[bool, typer.Option(help="Use the adversarial-image cache.")] = True,
    sanity: Annotated[
        bool,
        typer.Option(
            help="Run the sanity checks: PGD over eps {4,8,16} x steps {10,20}, eps 64, Square."
        ),
    ] = False,
    sanity_n: Annotated[
        int, typer.Option(min=1, help="Images used by the sanity-check attacks.")
    ] = 200,
    strict: Annotated[
        bool, typer.Option(help="Exit with code 3 when any check prints a warning.")
    ] = False,
    overwrite: Annotated[
        bool,
        typer.Option(help="Replace the results of another configuration in --out (else refused)."),
    ] = False,
    progress: Progress = True,
) -> None:
    """Evaluate defenses in front of a classifier: SA, RA, Avg = (SA+RA)/2 per attack, the
    per-image worst case over the attacks, and the cost in ms per image.

    Writes result.json (every figure, counts, config, versions), result.csv and table.md, and
    prints the table. Failed sanity checks print WARNING lines and appear in the files.
    """
    from irad.checks import check_count
    from irad.data import load_dataset, select_subset
    from irad.evaluate import (
        AttackSpec,
        SanityConfig,
        build_defenses,
        check_eps,
        evaluate_defenses,
        protocol_config,
    )
    from irad.evaluate.curves import parse_values, sweep
    from irad.models import load_classifier
    from irad.train.distributed import context_from_env

    eps_values = [check_eps(e, "--eps") for e in parse_values(eps, "--eps")]
    steps_values = [int(s) for s in parse_values(steps, "--steps")]
    if any(s < 1 for s in steps_values):
        raise ConfigError(f"--steps takes positive whole numbers, got {steps!r}")
    default_eps = eps_values[0] if len(eps_values) == 1 else 8.0
    config = protocol_config(
        protocol,
        threat,
        n=n,
        seed=seed,
        batch_size=batch_size,
        eot_samples=eot_samples,
        draws=draws,
        cost_batch_size=cost_batch_size,
        cost_repeats=cost_repeats,
        device=device,
        threads=threads,
        sanity=sanity,
        sanity_config=SanityConfig(n=sanity_n),
    )
    specs = [AttackSpec.parse(a, default_eps=default_eps) for a in (attack or ["autoattack"])]
    if len(eps_values) > 1 or steps_values:
        specs = sweep(specs, eps=eps_values if len(eps_values) > 1 else None, steps=steps_values)
    main = context_from_env().is_main  # under torchrun only rank 0 prints
    defenses = build_defenses(defense or ["none"])
    data = load_dataset(dataset, split, data_dir)
    if n is not None:
        check_count(n, "--n", len(data), f"images of {dataset}/{split}")
    elif config.n is not None and config.n > len(data):
        raise ConfigError(
            f"the {protocol} protocol evaluates the first {config.n} images, but "
            f"{dataset}/{split} has {len(data)}; pass --n {len(data)} or less"
        )
    data = select_subset(data, config.n, subset, subset_seed)  # --subset picks the n images
    classifier = load_classifier(weights, arch=model)
    if main:
        typer.echo(
            f"evaluating {len(defenses)} defense(s) x {len(specs)} attack(s), threat "
            f"{config.threat}, {config.n or len(data)} images of {dataset}/{split}, "
            f"{config.protocol_description}, seed {seed}",
            err=True,
        )
    result = evaluate_defenses(
        defenses,
        classifier,
        data,
        specs,
        config=config,
        out_dir=out,
        overwrite=overwrite,
        cache_dir=cache_dir,
        use_cache=cache,
        progress=progress,
        metadata={
            "command": "evaluate",
            "weights": str(weights),
            "model": model,
            "dataset": dataset,
            "split": split,
        },
    )
    if not main:
        return
    typer.echo(result.to_markdown())
    typer.echo(
        f"wrote {out / 'result.json'}, {out / 'result.csv'}, {out / 'per_image.csv'}, "
        f"{out / 'table.md'} ({result.timing.get('total_s', 0):.1f} s; "
        f"{result.timing.get('attack_batches', 0)} batches attacked, "
        f"{result.timing.get('cached_batches', 0)} from the cache)",
        err=True,
    )
    from irad.evaluate.curves import write_curves

    for line in write_curves(
        result.to_dict(),
        out,
        title=f"{result.config.threat} threat, {result.dataset.get('n')} images",
    ):
        typer.echo(line, err=True)
    if strict and result.warnings:
        typer.secho(f"{len(result.warnings)} warning(s); failing (--strict)", err=True, fg="red")
        raise typer.Exit(3)


def curves_command(
    results: Annotated[
        list[Path],
        typer.Argument(help="result.json files of irad evaluate runs with --eps or --steps."),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Figure prefix (PNG and SVG).")],
    axis: Annotated[str, typer.Option(help="eps | steps.")] = "eps",
    defense: Annotated[
        list[str] | None,
        typer.Option("--defense", help="Only these defenses (their labels), repeatable."),
    ] = None,
) -> None:
    """Draw the RA-against-eps (or steps) curves of one or more runs side by side: one panel
    per run and attack family, e.g. the oblivious and the adaptive threat of the same defenses.

    Prints the tables; writes OUT.png / OUT.svg (needs matplotlib) and OUT.csv.
    """
    from irad.evaluate.curves import plot_runs

    text, written = plot_runs(results, out, axis=axis, defenses=defense)
    typer.echo(text)
    typer.echo(f"wrote {', '.join(written)}", err=True)


def register(app: typer.Typer) -> None:
    """Add ``irad evaluate`` and ``irad curves`` to ``app``."""
    app.command("evaluate", epilog=EPILOG)(evaluate)
    app.command("curves")(curves_command)
