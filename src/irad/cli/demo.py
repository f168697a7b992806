"""``irad demo``: the bundled IRAD in front of the bundled classifier, attacked two ways.

One table, three rows (no defense, the DISCO-style reconstruction, IRAD) and two threat models:

* **oblivious**: the attack sees the classifier alone; the defense is applied afterwards;
* **adaptive**: the attack differentiates through defense + classifier (both defenses are
  deterministic and differentiable, so real gradients, no BPDA, no EOT are needed).

The adaptive figure is the one that measures robustness; the oblivious one only says how much
of a transferred perturbation the defense removes.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from irad.errors import ConfigError

EPILOG = """\
Examples:

\b
  # the default: 200 CIFAR-10 test images, APGD-CE (5 steps), at most 5 minutes on 2 CPU cores
  export IRAD_DATA=../shared/data/cifar10
  irad demo
\b
  # the full measure: standard AutoAttack, oblivious and adaptive, on 1000 images (hours on a CPU)
  irad demo --attack autoattack --n 1000 --out results/demo-aa
"""


def _pct(x: float) -> str:
    return f"{x:.1f}"


def demo(
    n: Annotated[int, typer.Option("--n", min=1, help="First N CIFAR-10 test images.")] = 200,
    attack: Annotated[
        str,
        typer.Option(
            help="Attack spec for both threat models: apgd:steps=5 (default, short), "
            "autoattack (standard, 100 iterations per component), pgd:steps=20, ..."
        ),
    ] = "apgd:steps=5",
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
    data_dir: Annotated[
        Path | None, typer.Option(help="Where CIFAR-10 lives (default: $IRAD_DATA).")
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for the results (JSON, CSV, Markdown).")
    ] = Path("results/demo"),
    cache_dir: Annotated[
        Path | None,
        typer.Option(help="Adversarial-image cache (default: $IRAD_CACHE or ~/.cache/irad)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Attack seed.")] = 0,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per attack batch.")] = 100,
    threads: Annotated[int | None, typer.Option(min=1, help="torch CPU threads.")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1, ...")] = "cpu",
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Evaluate the bundled IRAD (and the DISCO-style reconstruction it contains) in front of
    the bundled classifier: SA, and RA under an oblivious and an adaptive attack, in one table.

    Everything is offline: the weights ship with the package, CIFAR-10 is read from
    --data-dir / $IRAD_DATA (or downloaded once, with checksums, where the network allows).
    """
    from irad.data import load_dataset
    from irad.defenses import IRAD, Identity, ImplicitReconstruction
    from irad.evaluate import AttackSpec, EvaluationConfig, evaluate_defenses
    from irad.models import load_classifier
    from irad.utils.io import atomic_write_text

    started = time.perf_counter()
    spec = AttackSpec.parse(attack)
    clf = load_classifier(classifier)
    irad = IRAD.from_pretrained(weights)
    defenses = {
        "none": Identity(),
        "DISCO-style (no sampling)": ImplicitReconstruction.from_pretrained(weights),
        "IRAD": irad,
    }
    data = load_dataset("cifar10", "test", data_dir)
    if n > len(data):
        raise ConfigError(f"--n {n} exceeds the {len(data)} CIFAR-10 test images")
    config = EvaluationConfig(
        n=n,
        seed=seed,
        batch_size=batch_size,
        cost_batch_size=min(batch_size, n),
        cost_repeats=2,
        device=device,
        threads=threads,
        protocol="demo",
    )
    meta: dict[str, Any] = {"command": "demo", "classifier": classifier, "weights": weights}
    typer.echo(
        f"irad demo: {clf.config.get('arch')} ({classifier}) + IRAD ({irad.preset} preset, "
        f"{weights}) on the first {n} CIFAR-10 test images, {spec.label}, seed {seed}",
        err=True,
    )
    oblivious = evaluate_defenses(
        defenses,
        clf,
        data,
        [spec],
        "oblivious",
        config=config,
        out_dir=out / "oblivious",
        cache_dir=cache_dir,
        progress=progress,
        metadata=meta,
    )
    through = None
    if adaptive:
        # "none" under the adaptive threat is the oblivious attack again; skip the repeat.
        through = evaluate_defenses(
            {k: v for k, v in defenses.items() if k != "none"},
            clf,
            data,
            [spec],
            "adaptive",
            config=config.replace(cost_repeats=0),
            out_dir=out / "adaptive",
            cache_dir=cache_dir,
            progress=progress,
            metadata=meta,
        )
    table = _table(oblivious, through, spec.label)
    seconds = time.perf_counter() - started
    text = (
        f"{table}\n\n{n} CIFAR-10 test images, L∞ ε = {spec.eps:g}/255, {spec.label}, seed {seed}; "
        f"classifier {classifier}, IRAD weights {weights}; {seconds:.0f} s.\n"
        "Oblivious: the attack sees the classifier alone. Adaptive: it differentiates through "
        "defense + classifier (the real measure of robustness).\n"
    )
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "demo.md", text)
    typer.echo(text)
    typer.echo(f"wrote {out / 'demo.md'}, {out / 'oblivious'}, {out / 'adaptive'}", err=True)


def _table(oblivious: Any, adaptive: Any | None, attack: str) -> str:
    head = ["defense", "SA", f"RA oblivious ({attack})"]
    if adaptive is not None:
        head.append(f"RA adaptive ({attack})")
    head += ["Avg oblivious"] + (["Avg adaptive"] if adaptive is not None else []) + ["ms/img"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, outcome in oblivious.defenses.items():
        sa = oblivious.sa(label).percent
        ra_o = oblivious.ra(label, attack).percent
        row = [label, _pct(sa), _pct(ra_o)]
        ra_a = None
        if adaptive is not None:
            ra_a = adaptive.ra(label, attack).percent if label in adaptive.defenses else ra_o
            row.append(_pct(ra_a))
        row.append(_pct((sa + ra_o) / 2))
        if ra_a is not None:
            row.append(_pct((sa + ra_a) / 2))
        cost = outcome.cost
        row.append(f"{cost.ms_per_image:.2f}" if cost is not None else "-")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    """Add ``irad demo`` to ``app``."""
    app.command("demo", epilog=EPILOG)(demo)
