"""``irad evaluate``: SA / RA / Avg / cost of defenses under attacks, in the paper's layout."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from irad.cli.options import DataDir, Progress, Threads
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
        float,
        typer.Option(
            help="Default L∞ budget in units of 1/255 (8 means 8/255) for attacks that give no "
            "eps=."
        ),
    ] = 8.0,
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
        int | None, typer.Option("--n", min=1, help="Evaluate the first N images.")
    ] = None,
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
    from irad.data import load_dataset
    from irad.evaluate import (
        AttackSpec,
        SanityConfig,
        build_defenses,
        check_eps,
        evaluate_defenses,
        protocol_config,
    )
    from irad.models import load_classifier

    default_eps = check_eps(eps, "--eps")
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
    defenses = build_defenses(defense or ["none"])
    data = load_dataset(dataset, split, data_dir)
    if n is not None:
        check_count(n, "--n", len(data), f"images of {dataset}/{split}")
    elif config.n is not None and config.n > len(data):
        raise ConfigError(
            f"the {protocol} protocol evaluates the first {config.n} images, but "
            f"{dataset}/{split} has {len(data)}; pass --n {len(data)} or less"
        )
    classifier = load_classifier(weights, arch=model)
    typer.echo(
        f"evaluating {len(defenses)} defense(s) x {len(specs)} attack(s), threat {config.threat}, "
        f"{config.n or len(data)} images of {dataset}/{split}, {config.protocol_description}, "
        f"seed {seed}",
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
    typer.echo(result.to_markdown())
    typer.echo(
        f"wrote {out / 'result.json'}, {out / 'result.csv'}, {out / 'table.md'} "
        f"({result.timing.get('total_s', 0):.1f} s; {result.timing.get('attack_batches', 0)} "
        f"batches attacked, {result.timing.get('cached_batches', 0)} from the cache)",
        err=True,
    )
    if strict and result.warnings:
        typer.secho(f"{len(result.warnings)} warning(s); failing (--strict)", err=True, fg="red")
        raise typer.Exit(3)


def register(app: typer.Typer) -> None:
    """Add ``irad evaluate`` to ``app``."""
    app.command("evaluate", epilog=EPILOG)(evaluate)
