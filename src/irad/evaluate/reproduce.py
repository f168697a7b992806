"""The paper's tables as data: which defenses, attacks and threat model make each one.

``run_table("table1", classifier, dataset)`` evaluates every row with :func:`evaluate_defenses`
and writes ``comparison.md``: our SA / RA / Avg / cost beside the paper's figures.

Rows that need trained weights name them with placeholders, filled by :func:`run_table`'s
``variables``: ``{irad}`` is an IRAD checkpoint (default ``"cifar10"``, the bundled one;
``irad reproduce --irad-weights``) and ``{runs}`` a folder of stage-1 runs (Table 7, default
``runs``; ``--runs``).
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from irad.defenses import Defense, build_defense_spec
from irad.evaluate import paper
from irad.evaluate.config import EvaluationConfig, protocol_config
from irad.evaluate.harness import evaluate_defenses
from irad.evaluate.results import WORST_CASE, EvaluationResult
from irad.registry import Registry
from irad.utils.io import atomic_write_text
from irad.utils.lock import RunLock


@dataclass(frozen=True)
class TableRow:
    """One row: the paper's label, our defense spec (``name:k=v``) and the paper's figures."""

    label: str
    defense: str
    paper: paper.PaperRow | None = None


@dataclass(frozen=True)
class TableSpec:
    """A table of the paper in our protocol."""

    name: str
    title: str
    threat: str
    attacks: tuple[str, ...]
    rows: tuple[TableRow, ...]
    notes: str = ""
    settings: dict[str, Any] = field(default_factory=dict)

    def build_defenses(self, variables: dict[str, str] | None = None) -> dict[str, Defense]:
        """The rows' defenses, with ``{irad}`` / ``{runs}`` in their specs filled in."""
        values = {**DEFAULT_VARIABLES, **(variables or {})}
        out: dict[str, Defense] = {}
        for row in self.rows:
            out[row.label] = build_defense_spec(row.defense.format(**values))
        return out


#: Values of the placeholders in row specs (see the module docstring).
DEFAULT_VARIABLES = {"irad": "cifar10", "runs": "runs"}


TABLES: Registry[TableSpec] = Registry("table")


def _register(spec: TableSpec) -> TableSpec:
    TABLES.register(spec.name)(lambda: spec)
    return spec


# The baseline rows shared by several tables: (label, defense spec, key in the paper's tables).
_NAIVE_RESAMPLING = (
    ("IR(bil, d=1.5)", "ir-bil-si:shift=1.5", "ir-bil-si"),
    ("IR(bil, γ=1.5)", "ir-bil-sv:shift=1.5", "ir-bil-sv"),
    ("IR(nea, d=1.5)", "ir-nea-si:shift=1.5", "ir-nea-si"),
    ("IR(nea, γ=1.5)", "ir-nea-sv:shift=1.5", "ir-nea-sv"),
)
_CLASSIC = (
    ("Bit reduction (4 bits)", "bit-depth:bits=4", "bit-depth"),
    ("JPEG (quality 75)", "jpeg:quality=75", "jpeg"),
    ("Randomization (p=0.8)", "randomization:p=0.8", "randomization"),
    ("Median filter (3×3)", "median:kernel_size=3", "median"),
)


def _rows(
    entries: tuple[tuple[str, str, str], ...], figures: dict[str, paper.PaperRow]
) -> tuple[TableRow, ...]:
    """Rows with the paper's figures where ``figures`` has them."""
    return tuple(TableRow(label, spec, figures.get(key)) for label, spec, key in entries)


_NO_DEFENSE = (("w.o. defense", "none", "none"),)

_register(
    TableSpec(
        name="table1",
        title="Table 1 (naive image resampling) and Table 2's baseline rows, oblivious AutoAttack",
        threat="oblivious",
        attacks=("autoattack",),
        rows=_rows(_NO_DEFENSE + _NAIVE_RESAMPLING, paper.TABLE1) + _rows(_CLASSIC, paper.TABLE2),
        notes=(
            "Oblivious threat: AutoAttack (standard) sees the classifier alone and the defense "
            "is applied afterwards, so RA here is *not* robustness against an attacker who knows "
            "the defense (see the BPDA and adaptive tables)."
        ),
    )
)

_register(
    TableSpec(
        name="table3",
        title="Table 3's baseline rows and naive resampling under BPDA (PGD-10, step 1/255)",
        threat="bpda",
        attacks=("bpda-pgd",),
        rows=_rows(_NO_DEFENSE + _NAIVE_RESAMPLING + _CLASSIC, paper.TABLE3),
        notes=(
            "BPDA threat (Athalye et al. 2018), the paper's setting: PGD, 10 steps of 1/255, no "
            "random start, through defense + classifier with the defense's backward replaced by "
            "the identity. Random defenses get one draw per step (no EOT), as in the paper; "
            "`irad evaluate --threat bpda-eot` adds EOT."
        ),
    )
)


_IMPLICIT = (
    ("DISCO-style (ours, no sampling)", "recons:checkpoint={irad}", "disco"),
    ("IRAD (ours)", "irad:checkpoint={irad}", "irad"),
)
_OBLIVIOUS_NOTE = (
    "Oblivious threat: AutoAttack (standard) sees the classifier alone and the defense is "
    "applied afterwards, so RA here is *not* robustness against an attacker who knows the "
    "defense (see table5 for the adaptive attack)."
)

_register(
    TableSpec(
        name="table2",
        title="Table 2 (CIFAR-10): classic defenses, DISCO-style and IRAD, oblivious AutoAttack",
        threat="oblivious",
        attacks=("autoattack",),
        rows=_rows(_NO_DEFENSE + _CLASSIC + _IMPLICIT, paper.TABLE2),
        notes=_OBLIVIOUS_NOTE
        + " DISCO-style is our implicit representation queried at the unshifted grid (the "
        "paper's DISCO row used DISCO's released model).",
    )
)

_register(
    TableSpec(
        name="table4",
        title="Table 4: the same IRAD in front of another classifier, oblivious AutoAttack",
        threat="oblivious",
        attacks=("autoattack",),
        rows=_rows(_NO_DEFENSE + _IMPLICIT, {}),
        notes=_OBLIVIOUS_NOTE
        + " Run once per classifier (-w); the paper's rows are other classifiers "
        "(WRN-28-10 91.70/89.72, WRN-70-16 93.17/91.66, VGG-16-bn 91.53/90.50, ResNet-34 "
        "91.16/88.82).",
    )
)

_register(
    TableSpec(
        name="table5",
        title="Table 5 (rows DISCO, IRAD): full adaptive AutoAttack through defense + classifier",
        threat="adaptive",
        attacks=("autoattack",),
        rows=_rows(_NO_DEFENSE + _IMPLICIT, paper.TABLE5),
        notes=(
            "Adaptive threat: AutoAttack (standard) differentiates through defense + classifier "
            "(both defenses are deterministic and differentiable, so no BPDA or EOT is needed). "
            "The CPU protocol runs it on the first 200 test images."
        ),
    )
)

_register(
    TableSpec(
        name="table7",
        title="Table 7: stage-1 training tasks (DISCO-style reconstruction), oblivious AutoAttack",
        threat="oblivious",
        attacks=("autoattack",),
        rows=_rows(
            (
                ("Clean2Clean", "recons:checkpoint={runs}/t7-clean2clean/model", "clean2clean"),
                (
                    "Super Resolution",
                    "recons:checkpoint={runs}/t7-super-resolution/model",
                    "super-resolution",
                ),
                ("Restoration", "recons:checkpoint={runs}/t7-inpainting/model", "inpainting"),
                (
                    "Denoising (Gaussian)",
                    "recons:checkpoint={runs}/t7-gaussian-denoising/model",
                    "gaussian",
                ),
                ("Denoising (PGD)", "recons:checkpoint={runs}/t7-pgd-denoising/model", "pgd"),
            ),
            paper.TABLE7,
        ),
        notes=_OBLIVIOUS_NOTE
        + " Each row is the cpu preset trained on one task with the short schedule in "
        "docs/results.md (the paper: its full schedule).",
    )
)

_register(
    TableSpec(
        name="table8",
        title="Table 8: sampling strategies on the implicit representation, oblivious AutoAttack",
        threat="oblivious",
        attacks=("autoattack",),
        rows=_rows(
            (
                ("w.o. Sampling", "recons:checkpoint={irad}", "none"),
                ("SAMPLER(d = 1.5)", "recons:checkpoint={irad},sampling=si,shift=1.5", "si"),
                ("SAMPLER(γ = 1.5)", "recons:checkpoint={irad},sampling=sv,shift=1.5", "sv"),
                ("SampleNet", "irad:checkpoint={irad}", "samplenet"),
            ),
            paper.TABLE8,
        ),
        notes=_OBLIVIOUS_NOTE,
    )
)


_register(
    TableSpec(
        name="table15",
        title="Table 15: the reconstruction that renders SampleNet's points, oblivious AutoAttack",
        threat="oblivious",
        attacks=("autoattack",),
        rows=_rows(
            (
                ("Nearest + SampleNet", "irad:checkpoint={irad},render=nearest", "nearest"),
                ("Bilinear + SampleNet", "irad:checkpoint={runs}/t15-bilinear/model", "bilinear"),
                ("Implicit + SampleNet (IRAD)", "irad:checkpoint={irad}", "implicit"),
            ),
            paper.TABLE15,
        ),
        notes=_OBLIVIOUS_NOTE
        + " SampleNet reads the implicit representation's features in every row (as in the "
        "paper, A.5). Bilinear: SampleNet trained through bilinear rendering "
        "(`irad train-samplenet --render bilinear`). Nearest has no gradient with respect to the "
        "points, so no SampleNet can be trained through it; the row renders IRAD's trained "
        "shifts with nearest.",
    )
)


def table_names() -> list[str]:
    return TABLES.names()


def get_table(name: str) -> TableSpec:
    return TABLES.build(name)


def comparison_markdown(spec: TableSpec, result: EvaluationResult) -> str:
    """Our figures beside the paper's, in the paper's layout."""
    header = (
        "| Defense | SA | RA | Avg | Cost (ms/img) | Paper SA | Paper RA | Paper Avg |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|"
    )
    lines = [f"## {spec.title}", "", result.caption(), "", header]
    attack = WORST_CASE if len(spec.attacks) > 1 else spec.attacks[0]
    for row in spec.rows:
        d = result.defenses[row.label]
        sa, ra = result.sa(row.label), result.ra(row.label, attack)
        cost = "–" if d.cost is None else f"{d.cost.ms_per_image:.3f}"
        p = row.paper
        ours = f"{sa.percent:.2f} | {ra.percent:.2f} | {result.avg(row.label, attack):.2f}"
        theirs = "– | – | –" if p is None else f"{p.sa:.2f} | {p.ra:.2f} | {p.avg:.2f}"
        label = row.label + (" (random)" if d.stochastic else "")
        lines.append(f"| {label} | {ours} | {cost} | {theirs} |")
    lines += [
        "",
        "SA, RA, Avg = (SA + RA) / 2 in %. Paper: WideResNet-28-10 victim, full test set, "
        "A100; ours: the protocol named above. Compare costs as ratios between rows.",
    ]
    if spec.notes:
        lines += ["", spec.notes]
    if result.warnings:
        lines += ["", "Warnings:", ""] + [f"- {w}" for w in result.warnings]
    return "\n".join(lines) + "\n"


def run_table(
    name: str,
    classifier: nn.Module,
    dataset: Any,
    *,
    config: EvaluationConfig | None = None,
    protocol: str = "cpu",
    out_dir: str | Path | None = None,
    overwrite: bool = False,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    metadata: dict[str, Any] | None = None,
    variables: dict[str, str] | None = None,
    **settings: Any,
) -> tuple[EvaluationResult, str]:
    """Evaluate the rows of table ``name``; write ``comparison.md`` into ``out_dir``.

    The settings are ``config`` if given, else protocol ``protocol``'s for the table's threat
    (the CPU protocol evaluates the first 1000 test images, 200 under the adaptive threat), with
    ``settings`` overriding fields by name (None: not given; the record names what was
    overridden). ``variables`` fill the ``{irad}`` / ``{runs}`` placeholders of the rows' specs.

    Example:
        >>> result, text = run_table("table1", classifier, test, n=200)  # doctest: +SKIP
        >>> result.config.protocol_description  # doctest: +SKIP
        'cpu protocol, overridden: n=200'
    """
    spec = get_table(name)
    if config is not None:
        given = {k: v for k, v in settings.items() if v is not None}
        cfg = config.replace(threat=spec.threat, **spec.settings, **given)
    else:
        cfg = protocol_config(protocol, spec.threat, **{**spec.settings, **settings})
    lock = RunLock(out_dir, purpose=f"irad reproduce {name}") if out_dir is not None else None
    with lock if lock is not None else nullcontext():
        result = evaluate_defenses(
            spec.build_defenses(variables),
            classifier,
            dataset,
            list(spec.attacks),
            config=cfg,
            out_dir=out_dir,
            overwrite=overwrite,
            cache_dir=cache_dir,
            progress=progress,
            metadata={"table": name, "variables": variables or {}, **(metadata or {})},
        )
        text = comparison_markdown(spec, result)
        if out_dir is not None:
            atomic_write_text(Path(out_dir) / "comparison.md", text)
    return result, text
