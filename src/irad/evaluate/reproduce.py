"""The paper's tables as data: which defenses, attacks and threat model make each one.

``run_table("table1", classifier, dataset)`` evaluates every row with :func:`evaluate_defenses`
and writes ``comparison.md``: our SA / RA / Avg / cost beside the paper's figures.

Rows that need trained weights name them with placeholders, filled by :func:`run_table`'s
``variables``: ``{irad}`` is an IRAD checkpoint (default ``"cifar10"``, the bundled one;
``irad reproduce --irad-weights``) and ``{runs}`` a folder of stage-1 runs (Table 7, default
``runs``; ``--runs``); ``{stl}`` and ``{nrp}`` are the STL dictionary and the NRP purifier
(default ``"cifar10"``, the bundled ones; train them with ``irad train-stl`` / ``irad train-nrp``);
``{diffusion}`` is the score model of the DiffPure rows (``--diffusion-weights``).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from irad.defenses import Defense, build_defense_spec
from irad.errors import MissingWeights
from irad.evaluate import paper
from irad.evaluate.config import EvaluationConfig, protocol_config
from irad.evaluate.harness import evaluate_defenses
from irad.evaluate.plots import matplotlib_missing, plot_attack_bars
from irad.evaluate.results import WORST_CASE, EvaluationResult
from irad.registry import Registry
from irad.train.distributed import context_from_env
from irad.utils.io import atomic_write_text
from irad.utils.lock import RunLock


@dataclass(frozen=True)
class TableRow:
    """One row: the paper's label, our defense spec (``name:k=v``) and the paper's figures
    (``paper`` for a one-attack table; ``paper_attacks`` per attack key for a table of several
    attacks: a :class:`~irad.evaluate.paper.PaperRow`, or the RA alone as a float)."""

    label: str
    defense: str
    paper: paper.PaperRow | None = None
    paper_attacks: Mapping[str, paper.PaperRow | float] | None = None


@dataclass(frozen=True)
class TableAttack:
    """One attack of a table of several: the key of the paper's figures, the paper's name for
    it, our attack spec, and where the spec's settings come from."""

    key: str
    name: str
    spec: str
    source: str = ""


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
    #: The attacks by the paper's names, for tables of several attacks (Tables 10, 13).
    table_attacks: tuple[TableAttack, ...] = ()
    #: ``"defenses"``: one row per defense (and attack); ``"attacks"``: one row per attack,
    #: RA per defense in the columns (Table 10).
    layout: str = "defenses"
    #: ``"attack-bars"``: also draw the paper's Fig. 4 (RA per attack, ours and the paper's).
    figure: str | None = None

    def build_defenses(
        self, variables: dict[str, str] | None = None, skipped: dict[str, str] | None = None
    ) -> dict[str, Defense]:
        """The rows' defenses, with ``{irad}`` / ``{runs}`` in their specs filled in.

        A row whose learned defense has no weights yet (:class:`~irad.errors.MissingWeights`) is
        left out with a warning and its reason recorded in ``skipped`` (when given), so that the
        rest of the table still runs; without ``skipped`` the error is raised.
        """
        values = {**DEFAULT_VARIABLES, **(variables or {})}
        out: dict[str, Defense] = {}
        for row in self.rows:
            try:
                out[row.label] = build_defense_spec(row.defense.format(**values))
            except MissingWeights as err:
                if skipped is None:
                    raise
                skipped[row.label] = str(err)
                warnings.warn(f"{self.name}: row {row.label!r} not run: {err}", stacklevel=2)
        return out


#: Values of the placeholders in row specs (see the module docstring).
DEFAULT_VARIABLES = {
    "irad": "cifar10", "runs": "runs", "stl": "cifar10", "nrp": "cifar10", "diffusion": "cifar10",
}  # fmt: skip


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


# The learned purifiers of Table 2 (weights from `irad train-nrp` / `irad train-stl`).
_LEARNED = (
    ("NRP (ours, cpu preset)", "nrp:checkpoint={nrp}", "nrp"),
    ("STL (ours, cpu preset)", "stl:checkpoint={stl}", "stl"),
)


# DiffPure at the paper's t* = 0.1 (t = 100 of 1,000) on the bundled score model; the CPU protocol
# respaces the reverse chain to t / 5 steps (docs/diffusion.md).
_DIFFUSION = (
    ("DiffPure (t=100, 20 reverse steps)", "diffpure:t=100,reverse_steps=20", "diffpure"),
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
        rows=_rows(
            _NO_DEFENSE + _NAIVE_RESAMPLING + _CLASSIC + _LEARNED + _DIFFUSION, paper.TABLE3
        ),
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
        rows=_rows(_NO_DEFENSE + _CLASSIC + _LEARNED + _DIFFUSION + _IMPLICIT, paper.TABLE2),
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
        rows=_rows(_NO_DEFENSE + _IMPLICIT + _LEARNED[:1], paper.TABLE5),
        notes=(
            "Adaptive threat: AutoAttack (standard) differentiates through defense + classifier "
            "(every defense here is deterministic and differentiable, so no BPDA or EOT is "
            "needed). The CPU protocol runs it on the first 200 test images. STL is attacked "
            "separately (`irad evaluate --defense stl --threat adaptive --attack pgd:steps=10`, "
            "a stage of `irad reproduce all`): through its 40 FISTA iterations AutoAttack would "
            "take about 8 hours for 200 images on a CPU."
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


# -- Tables 10 and 13: many attacks (Sec. 6.2, A.3, A.4) ------------------------------------------
_DISCO_SCRIPT = (
    "DISCO's released transfer script (chihhuiho/disco, testing/cifar10_transfer_defense.py), "
    "whose attack list and order Table 10 follows; IRAD's own evaluation script is not public"
)

#: The ten attacks of Table 10 / Fig. 4 with the settings of the script the comparison follows.
TABLE10_ATTACKS: tuple[TableAttack, ...] = (
    TableAttack("fgsm", "FGSM", "fgsm", "FGSM(eps=8/255)"),
    TableAttack("bim", "BIM", "bim:steps=100,alpha=2", "BIM(eps=8/255, alpha=2/255, steps=100)"),
    TableAttack(
        "pgd",
        "PGD",
        "pgd:steps=100,alpha=2.2667,random_start=true",
        "PGD(eps=8/255, alpha=2/225, steps=100, random_start=True); 2/225 (= 2.2667/255) is "
        "what the script says, most likely a typo for 2/255, kept",
    ),
    TableAttack(
        "rfgsm", "RFGSM", "rfgsm:steps=100,alpha=2", "RFGSM(eps=8/255, alpha=2/255, steps=100)"
    ),
    TableAttack("tpgd", "TPGD", "tpgd:steps=7,alpha=2", "TPGD(eps=8/255, alpha=2/255, steps=7)"),
    TableAttack(
        "apgd",
        "APGD",
        "apgd:steps=10,loss=ce",
        "APGD(eps=8/255): torchattacks' defaults, 10 steps, CE loss, 1 restart, rho 0.75",
    ),
    TableAttack(
        "eotpgd",
        "EOT-PGD",
        "eotpgd:steps=40,alpha=8,eot_iter=1",
        "EOTPGD(eps=8/255, alpha=8/255, steps=40, eot_iter=10); we run eot_iter=1: on the "
        "oblivious surface (the deterministic classifier) the 10 gradients are identical, so "
        "the images are the same at a tenth of the cost",
    ),
    TableAttack("ffgsm", "FFGSM", "ffgsm:alpha=10", "FFGSM(eps=8/255, alpha=10/255)"),
    TableAttack(
        "mifgsm",
        "MI-FGSM",
        "mifgsm:steps=5,decay=1.0",
        "MIFGSM(eps=8/255, steps=5, decay=1.0), alpha torchattacks' 2/255",
    ),
    TableAttack(
        "jitter",
        "Jitter",
        "jitter",
        "Jitter(eps=8/255): torchattacks' defaults, alpha 2/255, 10 steps, scale 10, std 0.1, "
        "random start",
    ),
)

#: The three transfer attacks of Table 13 (A.4).
TABLE13_ATTACKS: tuple[TableAttack, ...] = (
    TableAttack(
        "vmifgsm",
        "VMI-FGSM",
        "vmifgsm",
        "torchattacks' defaults: alpha 2/255, 10 steps, decay 1.0, N = 5 neighbours, beta 3/2",
    ),
    TableAttack("vnifgsm", "VNI-FGSM", "vnifgsm", "as VMI-FGSM"),
    TableAttack(
        "admix",
        "Admix",
        "admix",
        "the Admix paper's defaults: 10 steps of eps/10, decay 1.0, 5 scales, 3 mixes, eta 0.2",
    ),
)


def _by_defense(table: Mapping[str, Mapping[str, float]], defense: str) -> dict[str, float]:
    """Table 10's figures (attack -> defense -> RA) of one defense: attack -> RA."""
    return {attack: row[defense] for attack, row in table.items() if defense in row}


_register(
    TableSpec(
        name="table10",
        title="Table 10 / Fig. 4 (CIFAR-10): the DISCO-style defense and IRAD against ten "
        "attacks, oblivious",
        threat="oblivious",
        attacks=tuple(a.spec for a in TABLE10_ATTACKS),
        table_attacks=TABLE10_ATTACKS,
        layout="attacks",
        figure="attack-bars",
        rows=(
            TableRow("w.o. defense", "none"),
            TableRow(
                "DISCO-style (ours)",
                "recons:checkpoint={irad}",
                paper_attacks=_by_defense(paper.TABLE10, "disco"),
            ),
            TableRow(
                "IRAD (ours)",
                "irad:checkpoint={irad}",
                paper_attacks=_by_defense(paper.TABLE10, "irad"),
            ),
        ),
        notes=(
            "Oblivious threat, as in the paper: every attack sees the classifier alone and the "
            "defense is applied to its finished images (RA here is *not* robustness against an "
            "attacker who knows the defense). The attack settings are those of "
            + _DISCO_SCRIPT
            + ". The paper's DISCO row is DISCO's released model; ours is our implicit "
            "representation queried at the unshifted grid."
        ),
    )
)

_register(
    TableSpec(
        name="table13",
        title="Table 13 (CIFAR-10): transfer-based attacks VMI-FGSM, VNI-FGSM and Admix, oblivious",
        threat="oblivious",
        attacks=tuple(a.spec for a in TABLE13_ATTACKS),
        table_attacks=TABLE13_ATTACKS,
        rows=(
            TableRow("No defense", "none", paper_attacks=paper.TABLE13["none"]),
            TableRow(
                "DISCO-style (ours)",
                "recons:checkpoint={irad}",
                paper_attacks=paper.TABLE13["disco"],
            ),
            TableRow("IRAD (ours)", "irad:checkpoint={irad}", paper_attacks=paper.TABLE13["irad"]),
        ),
        notes=(
            "Oblivious threat: the attacks are crafted on the classifier alone (transfer to the "
            "defended model). The paper does not publish the settings of these attacks; we use "
            "torchattacks' defaults for VMI-/VNI-FGSM and the Admix paper's for Admix. The "
            "paper's DiffPure (t = 100) row, SA / RA: VMI-FGSM 89.21 / 85.55, VNI-FGSM "
            "89.21 / 85.49, Admix 89.21 / 85.23; irad does not run it here (`irad evaluate "
            "--defense diffpure:...` does, at a far higher cost)."
        ),
    )
)


def _attack_label(spec: TableSpec, attack: TableAttack) -> str:
    from irad.evaluate.specs import AttackSpec

    return AttackSpec.parse(attack.spec).label


def _ci(count: Any, draws: int) -> str:
    from irad.evaluate.intervals import format_interval

    return format_interval(*count.ci95(draws))


def _attack_rows_markdown(spec: TableSpec, result: EvaluationResult) -> str:
    """Table 10's layout: one row per attack, RA per defense (ours with its 95 % interval, the
    paper's beside it); then the mean over the attacks (the paper's Avg.) and the per-image
    worst case over them; then where the ordering agrees with the paper's."""
    rows = spec.rows
    header = ["Attack"]
    for row in rows:
        header.append(f"{row.label} RA")
        if row.paper_attacks:
            header.append(f"paper {_paper_name(row.label)}")
    lines = [f"## {spec.title}", "", result.caption(), ""]
    lines += ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    ours: dict[str, dict[str, float]] = {row.label: {} for row in rows}
    for attack in spec.table_attacks:
        label = _attack_label(spec, attack)
        cells = [attack.name]
        for row in rows:
            d = result.defenses[row.label]
            ra = result.ra(row.label, label)
            ours[row.label][attack.key] = ra.percent
            cells.append(f"{ra.percent:.2f} {_ci(ra, d.draws)}")
            if row.paper_attacks:
                theirs = row.paper_attacks.get(attack.key)
                cells.append("–" if theirs is None else f"{_paper_ra(theirs):.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    avg = ["Avg. (mean over the attacks)"]
    worst = ["**Worst case** (per image, over the attacks)"]
    sa = ["SA (clean)"]
    for row in rows:
        d = result.defenses[row.label]
        values = list(ours[row.label].values())
        avg.append(f"{sum(values) / len(values):.2f}")
        w = result.ra(row.label)
        worst.append(f"**{w.percent:.2f}** {_ci(w, d.draws)}")
        sa.append(f"{d.sa.percent:.2f} {_ci(d.sa, d.draws)}")
        if row.paper_attacks:
            theirs = row.paper_attacks.get("avg")
            avg.append("–" if theirs is None else f"{_paper_ra(theirs):.2f}")
            worst.append("–")
            sa.append("–")
    lines += ["| " + " | ".join(c) + " |" for c in (avg, worst, sa)]
    lines += [
        "",
        "RA in %; in brackets the 95 % Wilson interval (binomial over the images). Paper: "
        "WideResNet-28-10 victim, full test set; ours: the protocol named above. The worst case "
        "counts an image as robust only if it survives all ten attacks.",
        "",
        "Attack settings (ours = the spec in the run; the source's in words):",
        "",
    ]
    lines += [f"- {a.name}: `{_attack_label(spec, a)}` ({a.source})" for a in spec.table_attacks]
    lines += ["", *_ordering(spec, ours)]
    if spec.notes:
        lines += ["", spec.notes]
    if result.warnings:
        lines += ["", "Warnings:", ""] + [f"- {w}" for w in result.warnings]
    return "\n".join(lines) + "\n"


def _paper_name(label: str) -> str:
    """The paper's name of one of our rows: ``DISCO-style (ours)`` -> ``DISCO``."""
    return label.replace(" (ours)", "").replace("-style", "")


def _paper_ra(value: paper.PaperRow | float) -> float:
    return value.ra if isinstance(value, paper.PaperRow) else float(value)


def _ordering(spec: TableSpec, ours: Mapping[str, Mapping[str, float]]) -> list[str]:
    """Where our ordering agrees with the paper's: the last compared row (IRAD) above the first
    (DISCO) under every attack, and which attack is the hardest for each."""
    compared = [row for row in spec.rows if row.paper_attacks]
    if len(compared) < 2:
        return []
    names = {a.key: a.name for a in spec.table_attacks}
    keys = [a.key for a in spec.table_attacks]
    theirs = {
        row.label: {k: _paper_ra(v) for k, v in (row.paper_attacks or {}).items()}
        for row in compared
    }
    low, high = compared[0].label, compared[-1].label
    above = [k for k in keys if ours[high][k] > ours[low][k]]
    paper_above = [
        k
        for k in keys
        if k in theirs[high] and k in theirs[low] and theirs[high][k] > theirs[low][k]
    ]
    not_above = [names[k] for k in keys if k not in above]
    out = [
        "Ordering against the paper's:",
        "",
        f"- {high} above {low}: under {len(above)} of {len(keys)} attacks (paper: "
        f"{len(paper_above)} of {len(keys)})"
        + (f"; not under {', '.join(not_above)}" if not_above else "")
        + ".",
    ]
    for label in (low, high):
        known = [k for k in keys if k in theirs[label]]
        if not known:
            continue
        lowest = min(ours[label][k] for k in keys)
        mine = [k for k in keys if ours[label][k] == lowest]  # ties are all named
        hardest = min(known, key=lambda k: theirs[label][k])
        verdict = "agrees" if hardest in mine else "differs"
        out.append(
            f"- Hardest attack for {label}: {', '.join(names[k] for k in mine)} ({lowest:.2f} %); "
            f"paper: {names[hardest]} ({theirs[label][hardest]:.2f} %): {verdict}."
        )
    return out


def _defense_attack_markdown(spec: TableSpec, result: EvaluationResult) -> str:
    """Table 13's layout: per defense, one row per attack and one for the per-image worst case
    over the attacks; SA / RA / Avg, ours (with 95 % intervals) beside the paper's."""
    header = (
        "| Defense | Attack | SA | RA | Avg | Paper SA | Paper RA | Paper Avg |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|"
    )
    lines = [f"## {spec.title}", "", result.caption(), "", header]
    for row in spec.rows:
        d = result.defenses[row.label]
        sa = d.sa
        entries = [(a.name, _attack_label(spec, a), a.key) for a in spec.table_attacks]
        entries.append(("**worst case**", WORST_CASE, ""))
        for name, label, key in entries:
            ra = result.ra(row.label, label)
            theirs = (row.paper_attacks or {}).get(key) if key else None
            if isinstance(theirs, paper.PaperRow):
                figures = f"{theirs.sa:.2f} | {theirs.ra:.2f} | {theirs.avg:.2f}"
            else:
                figures = "– | – | –"
            lines.append(
                f"| {row.label} | {name} | {sa.percent:.2f} {_ci(sa, d.draws)} | "
                f"{ra.percent:.2f} {_ci(ra, d.draws)} | {result.avg(row.label, label):.2f} | "
                f"{figures} |"
            )
    lines += [
        "",
        "SA, RA, Avg = (SA + RA) / 2 in %; in brackets the 95 % Wilson interval (binomial over "
        "the images). Worst case: an image counts as robust only if it survives every attack of "
        "the table. Paper: WideResNet-28-10 victim, full test set; ours: the protocol named "
        "above.",
        "",
        "Attack settings:",
        "",
    ]
    lines += [f"- {a.name}: `{_attack_label(spec, a)}` ({a.source})" for a in spec.table_attacks]
    if spec.notes:
        lines += ["", spec.notes]
    if result.warnings:
        lines += ["", "Warnings:", ""] + [f"- {w}" for w in result.warnings]
    return "\n".join(lines) + "\n"


def attack_bars(spec: TableSpec, result: EvaluationResult, prefix: str | Path) -> list[Path]:
    """Fig. 4 in our protocol: RA per attack for each row with the paper's figures, ours beside
    the paper's (hatched). ``prefix.png`` / ``.svg``; ``[]`` without matplotlib."""
    names = [a.name for a in spec.table_attacks]
    series: dict[str, list[float | None]] = {}
    for row in spec.rows:
        if not row.paper_attacks:
            continue
        series[row.label] = [
            result.ra(row.label, _attack_label(spec, a)).percent for a in spec.table_attacks
        ]
        series[f"{_paper_name(row.label)} (paper)"] = [
            None if a.key not in row.paper_attacks else _paper_ra(row.paper_attacks[a.key])
            for a in spec.table_attacks
        ]
    n = result.dataset.get("n")
    return plot_attack_bars(
        names,
        series,
        prefix,
        title=f"{spec.title.split(':')[0]}: ours ({n} images) and the paper's",
    )


def table_names() -> list[str]:
    return TABLES.names()


def get_table(name: str) -> TableSpec:
    return TABLES.build(name)


def comparison_markdown(
    spec: TableSpec, result: EvaluationResult, skipped: dict[str, str] | None = None
) -> str:
    """Our figures beside the paper's, in the paper's layout; rows in ``skipped`` (label ->
    reason) are listed as not run."""
    if skipped:
        spec = dataclasses.replace(spec, rows=tuple(r for r in spec.rows if r.label not in skipped))
    text = _comparison_markdown(spec, result)
    if skipped:
        text += "\nNot run (no weights yet):\n\n" + "".join(
            f"- {label}: {reason}\n" for label, reason in skipped.items()
        )
    return text


def _comparison_markdown(spec: TableSpec, result: EvaluationResult) -> str:
    if spec.layout == "attacks":
        return _attack_rows_markdown(spec, result)
    if spec.table_attacks:
        return _defense_attack_markdown(spec, result)
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
    main = context_from_env().is_main  # under torchrun rank 0 holds the folder and writes
    take = out_dir is not None and main
    lock = RunLock(out_dir, purpose=f"irad reproduce {name}") if take else None
    with lock if lock is not None else nullcontext():
        skipped: dict[str, str] = {}
        result = evaluate_defenses(
            spec.build_defenses(variables, skipped),
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
        text = comparison_markdown(spec, result, skipped)
        if out_dir is not None and main:
            atomic_write_text(Path(out_dir) / "comparison.md", text)
            if spec.figure == "attack-bars":
                figures = attack_bars(spec, result, Path(out_dir) / "fig4")
                text += "\n" + (
                    f"Figure: {', '.join(map(str, figures))}\n"
                    if figures
                    else f"({matplotlib_missing()})\n"
                )
    return result, text
