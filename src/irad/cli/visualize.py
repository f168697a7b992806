"""``irad visualize`` (Figs. 6-8: one image through a defense) and ``irad analysis`` (Tables 18
and 19, Fig. 5: what a defense does to the victim's features and decision path).

The engines are :func:`irad.analysis.run.run_case` and :func:`irad.analysis.run.run_semantics`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from irad.cli.options import DataDir, Device, Threads, set_threads

VISUALIZE_EPILOG = """\
Examples:

\b
  # Fig. 6 for test image 7: the bundled IRAD, PGD-10 on the classifier alone (oblivious)
  export IRAD_DATA=../shared/data/cifar10
  irad visualize -w ../shared/data/weights/resnet56-4bfd9763.th --index 7 --out figures
\b
  # any defense spec (chains with '>'), any attack spec, another random resampling
  irad visualize -w resnet56-4bfd9763.th --index 7 --defense 'recons' \\
      --attack autoattack --resample 'ir-bil-sv:shift=0.5,seed=1'
"""

ANALYSIS_EPILOG = """\
Examples:

\b
  # Tables 18 and 19 and Fig. 5: 100 cat images (class 3), PGD-10 on the classifier alone
  export IRAD_DATA=../shared/data/cifar10
  irad analysis -w ../shared/data/weights/resnet56-4bfd9763.th --class 3 --n 100 \\
      --out results/analysis-cat
\b
  # other defenses (each applied to the adversarial images), L2-normalised features
  irad analysis -w resnet56-4bfd9763.th --defense 'recons' --defense 'irad' \\
      --defense 'jpeg:quality=75' --feature-norm l2
"""

Weights = Annotated[
    str,
    typer.Option(
        "--weights", "-w", help="Victim classifier: an irad checkpoint or an akamaster .th file."
    ),
]
Model = Annotated[
    str | None, typer.Option("--model", "-m", help="Architecture (default: the checkpoint's).")
]
DatasetOpt = Annotated[
    str, typer.Option("--dataset", "-d", help="cifar10, cifar100, an .npz file or image folder.")
]
Split = Annotated[str, typer.Option(help="Split of a named data set: test or train.")]
Attack = Annotated[
    str,
    typer.Option(
        "--attack",
        "-a",
        help="Attack spec run on the classifier alone (oblivious), e.g. pgd:steps=10, "
        "autoattack, apgd:steps=5,eps=4 (ε in /255).",
    ),
]
Seed = Annotated[int, typer.Option(min=0, help="Seed of the attack and of random defenses.")]


def visualize(
    weights: Weights,
    index: Annotated[int, typer.Option("--index", "-i", min=0, help="Image index.")] = 0,
    defense: Annotated[
        str,
        typer.Option(
            "--defense", help="Defense spec: irad, irad:checkpoint=DIR, recons, chains with '>'."
        ),
    ] = "irad",
    attack: Attack = "pgd:steps=10",
    resample: Annotated[
        str, typer.Option(help="The 'randomly resampled' panels' defense spec.")
    ] = "ir-bil-sv:shift=1.5,seed=0",
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the figure.")] = Path(
        "figures"
    ),
    model: Model = None,
    dataset: DatasetOpt = "cifar10",
    split: Split = "test",
    data_dir: DataDir = None,
    top_k: Annotated[int, typer.Option(min=1, help="Logits shown per image.")] = 5,
    seed: Seed = 0,
    device: Device = "cpu",
    threads: Threads = None,
) -> None:
    """Figs. 6-8 for one image: clean / adversarial with their top logits, randomly resampled,
    defended; SampleNet's shift field over the image; |adv - clean| beside |defended - clean|.

    Writes OUT/case-INDEX.png, .svg and .txt (the predictions).
    """
    from irad.analysis.run import run_case
    from irad.data import load_dataset
    from irad.evaluate.plots import matplotlib_missing
    from irad.models import load_classifier
    from irad.utils.env import resolve_device

    set_threads(threads)
    data = load_dataset(dataset, split, data_dir)
    dev = resolve_device(device)
    classifier = load_classifier(weights, arch=model).to(dev).eval()
    case, paths = run_case(
        classifier,
        data,
        index,
        out,
        defense=defense,
        attack=attack,
        resample=resample,
        seed=seed,
        top_k=top_k,
        device=dev,
    )
    for line in case.summary():
        typer.echo(line)
    missing = matplotlib_missing()
    if missing:
        typer.echo(missing, err=True)
    typer.echo(f"wrote {out / f'case-{index}.txt'}" + "".join(f", {p}" for p in paths), err=True)


def analysis(
    weights: Weights,
    target_class: Annotated[
        str, typer.Option("--class", "-c", help="Class id or name (e.g. 3 or cat).")
    ] = "0",
    n: Annotated[int, typer.Option("--n", min=2, help="Images of that class (the first N).")] = 100,
    defenses: Annotated[
        list[str] | None,
        typer.Option(
            "--defense",
            help="Defense spec applied to the adversarial images (repeat; default: recons, irad).",
        ),
    ] = None,
    attack: Attack = "pgd:steps=10",
    feature_norm: Annotated[
        str, typer.Option(help="Feature normalisation before distances: none or l2.")
    ] = "none",
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the results.")] = Path(
        "results/analysis"
    ),
    model: Model = None,
    dataset: DatasetOpt = "cifar10",
    split: Split = "test",
    data_dir: DataDir = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per batch.")] = 100,
    seed: Seed = 0,
    device: Device = "cpu",
    threads: Threads = None,
) -> None:
    """Tables 18 and 19 and Fig. 5: feature distance to the clean centre, decision-path
    similarity with the clean image, and a PCA of clean / Adv / defended Adv features.

    Writes OUT/table.md, OUT/result.json and OUT/fig5-pca.png / .svg.
    """
    from irad.analysis.run import DEFAULT_DEFENSES, run_semantics
    from irad.data import load_dataset
    from irad.evaluate.plots import matplotlib_missing
    from irad.models import load_classifier
    from irad.utils.env import resolve_device

    set_threads(threads)
    data = load_dataset(dataset, split, data_dir)
    dev = resolve_device(device)
    classifier = load_classifier(weights, arch=model).to(dev).eval()
    _, text, paths = run_semantics(
        classifier,
        data,
        out,
        target_class=target_class,
        n=n,
        attack=attack,
        defenses=defenses or list(DEFAULT_DEFENSES),
        normalize=feature_norm,
        batch_size=batch_size,
        seed=seed,
        device=dev,
        metadata={"weights": str(weights)},
    )
    typer.echo(text)
    missing = matplotlib_missing()
    if missing:
        typer.echo(missing, err=True)
    typer.echo(f"wrote {out / 'table.md'}" + "".join(f", {p}" for p in paths), err=True)


def register(app: typer.Typer) -> None:
    """Add ``irad visualize`` and ``irad analysis`` to ``app``."""
    app.command("visualize", epilog=VISUALIZE_EPILOG, no_args_is_help=True)(visualize)
    app.command("analysis", epilog=ANALYSIS_EPILOG, no_args_is_help=True)(analysis)
