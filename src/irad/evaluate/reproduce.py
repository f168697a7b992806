"""The paper's tables as data: which defenses, attacks and threat model make each one.

``run_table("table1", classifier, dataset)`` evaluates every row with :func:`evaluate_defenses`
and writes ``comparison.md``: our SA / RA / Avg / cost beside the paper's figures. Tables that
need trained implicit-representation weights take them from ``--irad-weights`` (see issue list).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from irad.defenses import Defense, build_defense
from irad.errors import ConfigError
from irad.evaluate import paper
from irad.evaluate.harness import evaluate_defenses
from irad.evaluate.report import WORST_CASE, EvaluationResult
from irad.evaluate.specs import EvaluationConfig, parse_spec
from irad.registry import Registry
from irad.utils.io import atomic_write_text


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

    def build_defenses(self) -> dict[str, Defense]:
        out: dict[str, Defense] = {}
        for row in self.rows:
            name, params = parse_spec(row.defense)
            out[row.label] = build_defense(name, **params)
        return out


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
    out_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    metadata: dict[str, Any] | None = None,
) -> tuple[EvaluationResult, str]:
    """Evaluate the rows of table ``name``; write ``comparison.md`` into ``out_dir``."""
    spec = get_table(name)
    cfg = (config or EvaluationConfig.cpu_protocol()).replace(threat=spec.threat, **spec.settings)
    if cfg.threat != spec.threat:  # pragma: no cover - replace() above sets it
        raise ConfigError(f"{name} is defined for the {spec.threat} threat")
    result = evaluate_defenses(
        spec.build_defenses(),
        classifier,
        dataset,
        list(spec.attacks),
        config=cfg,
        out_dir=out_dir,
        cache_dir=cache_dir,
        progress=progress,
        metadata={"table": name, **(metadata or {})},
    )
    text = comparison_markdown(spec, result)
    if out_dir is not None:
        atomic_write_text(Path(out_dir) / "comparison.md", text)
    return result, text
