"""Curves, not only points: RA against ε and RA against attack steps.

A sweep is an ordinary run whose attack list holds one attack at several budgets (or step
counts): :func:`sweep` expands ``["pgd:steps=20"]`` with ``eps=(2, 4, 8, 16)`` into four attacks,
``irad evaluate --eps 2,4,8,16`` does the same, and :func:`curves` reads the curves back from the
result record (``EvaluationResult.to_dict()`` or a saved ``result.json``)::

    >>> [s.label for s in sweep([AttackSpec.parse("pgd:steps=20")], eps=(4, 8))]
    ['pgd:steps=20,eps=4', 'pgd:steps=20']

Attacks that differ only in the swept setting form one *family* (``pgd:steps=20`` for an ε
sweep, ``pgd:eps=16`` for a steps sweep); every family with two or more values is a curve, for
every defense, with the 95 % Wilson interval at each point. When a run sweeps several families
the per-image worst case over them is a curve too (``worst-case``). The sanity checks read these
curves: RA must not rise when ε or the number of steps rises (:func:`irad.evaluate.sanity.
check_curves`). Figures: :func:`irad.evaluate.plots.plot_curves`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor

from irad.errors import ConfigError
from irad.evaluate.intervals import format_interval
from irad.evaluate.metrics import Count, decode_bits, encode_bits, worst_case
from irad.evaluate.specs import AttackSpec, check_eps
from irad.registry import format_spec
from irad.utils.io import atomic_write_text

#: The axes a curve can run along.
AXES = ("eps", "steps")
#: The parameter an attack's number of iterations goes by.
STEPS_PARAM = "steps"
WORST_CASE = "worst-case"


def parse_values(text: str | Sequence[float] | None, what: str) -> list[float]:
    """``"2,4,8,16"`` -> ``[2.0, 4.0, 8.0, 16.0]`` (sorted, without repeats); None -> ``[]``.

    Example:
        >>> parse_values("16, 4,8", "--eps")
        [4.0, 8.0, 16.0]
    """
    if text is None:
        return []
    items: Sequence[Any] = text.split(",") if isinstance(text, str) else text
    out = []
    for item in items:
        try:
            out.append(float(str(item).strip()))
        except ValueError as err:
            raise ConfigError(
                f"{what} takes numbers separated by commas (e.g. 2,4,8,16), got {text!r}"
            ) from err
    if not out:
        raise ConfigError(f"{what} needs at least one value, got {text!r}")
    return sorted(set(out))


def takes_steps(spec: AttackSpec) -> bool:
    """Whether the attack has a number of steps to sweep."""
    from irad.attacks import ATTACKS, attack_parameters

    if spec.name not in ATTACKS:
        return STEPS_PARAM in spec.params
    return STEPS_PARAM in attack_parameters(spec.name)


def sweep(
    specs: Sequence[AttackSpec],
    *,
    eps: Sequence[float] | None = None,
    steps: Sequence[int] | None = None,
) -> list[AttackSpec]:
    """Every attack at every ``eps`` (in /255) and, where it has steps, every ``steps``.

    The attacks keep their other settings (the step size too: with few steps and a large ε an
    attack may not reach the edge of the ball, which the curve then shows). An attack without a
    number of steps (FGSM) is kept once in a steps sweep. Duplicates are dropped.

    Example:
        >>> [s.label for s in sweep([AttackSpec.parse("fgsm"), AttackSpec.parse("pgd")],
        ...                          steps=(10, 20))]
        ['fgsm', 'pgd:steps=10', 'pgd:steps=20']
    """
    out: list[AttackSpec] = []
    for spec in specs:
        variants = [spec] if not eps else [spec.replace(eps=check_eps(e)) for e in eps]
        if steps and takes_steps(spec):
            variants = [v.replace(**{STEPS_PARAM: int(s)}) for v in variants for s in steps]
        for v in variants:
            if v.label not in {o.label for o in out}:
                out.append(v)
    return out


@dataclass
class CurvePoint:
    """RA of one defense at one value of the swept setting."""

    x: float
    attack: str  # the attack's label in the run ("worst-case" on the worst-case curve)
    ra: Count
    draws: int = 1
    bits: list[str] = field(default_factory=list, repr=False)

    @property
    def ci95(self) -> tuple[float, float]:
        return self.ra.ci95(self.draws)

    def correct(self) -> Tensor:
        """Per-image correctness ``(draws, N)``."""
        return decode_bits(self.bits)


@dataclass
class Curve:
    """RA of one defense against ε or steps, for one attack family."""

    defense: str
    family: str
    axis: str
    points: list[CurvePoint]
    sa: Count | None = None

    @property
    def xs(self) -> list[float]:
        return [p.x for p in self.points]

    def to_dict(self) -> dict[str, Any]:
        return {
            "defense": self.defense,
            "family": self.family,
            "axis": self.axis,
            "sa": None if self.sa is None else self.sa.to_dict(),
            "points": [
                {
                    "x": p.x,
                    "attack": p.attack,
                    "ra": p.ra.to_dict(),
                    "ci95": [round(v, 4) for v in p.ci95],
                }
                for p in self.points
            ],
        }


def _spec(data: Mapping[str, Any]) -> AttackSpec:
    return AttackSpec.from_dict(data)


def _family(spec: AttackSpec, axis: str) -> tuple[str, float | None]:
    """``(family label, x)`` of an attack along ``axis`` (x None: not on that axis)."""
    if axis == "eps":
        name = spec.alias or spec.name
        params = dict(spec.params) if spec.alias is None else _preset_free(spec)
        return format_spec(name, params), spec.eps
    if axis == "steps":
        steps = spec.params.get(STEPS_PARAM)
        if steps is None:
            if not takes_steps(spec):
                return "", None
            from irad.attacks import attack_parameters

            steps = attack_parameters(spec.name).get(STEPS_PARAM)
        if not isinstance(steps, int | float):
            return "", None
        rest = {k: v for k, v in spec.params.items() if k != STEPS_PARAM}
        if spec.eps != 8.0:
            rest["eps"] = spec.eps
        return format_spec(spec.name, rest), float(steps)
    raise ConfigError(f"unknown curve axis {axis!r}; choose one of: {', '.join(AXES)}")


def _preset_free(spec: AttackSpec) -> dict[str, Any]:
    from irad.evaluate.specs import attack_presets

    preset = attack_presets().get(spec.alias or "", ("", {}))[1]
    return {k: v for k, v in spec.params.items() if k not in preset or preset[k] != v}


def curves(record: Mapping[str, Any], axis: str = "eps") -> list[Curve]:
    """The curves along ``axis`` in an evaluation record, per defense and attack family.

    Families with a single value are not curves and are left out; with two or more families
    sharing values, a ``worst-case`` curve (per image, over the families at each value) is added
    for each defense.
    """
    if axis not in AXES:
        raise ConfigError(f"unknown curve axis {axis!r}; choose one of: {', '.join(AXES)}")
    attacks = [(a["label"], _spec(a)) for a in record.get("attacks", [])]
    families: dict[str, list[tuple[float, str]]] = {}
    for label, spec in attacks:
        family, x = _family(spec, axis)
        if x is not None:
            families.setdefault(family, []).append((x, label))
    families = {f: sorted(pts) for f, pts in families.items() if len({x for x, _ in pts}) > 1}
    out: list[Curve] = []
    for defense, d in record.get("defenses", {}).items():
        draws = int(d.get("draws", 1))
        sa = Count.from_dict(d["sa"]) if d.get("sa") else None
        mine: list[Curve] = []
        for family, pts in families.items():
            points = []
            for x, label in pts:
                a = d.get("attacks", {}).get(label)
                if a is None:
                    continue
                ra = Count.from_dict(a["ra"])
                points.append(CurvePoint(x, label, ra, draws, list(a.get("per_image", []))))
            if len(points) > 1:
                mine.append(Curve(defense, family, axis, points, sa))
        out += mine
        if len(mine) > 1:
            worst = _worst_curve(mine, defense, axis, draws, sa)
            if worst is not None:
                out.append(worst)
    return out


def _worst_curve(
    family_curves: Sequence[Curve], defense: str, axis: str, draws: int, sa: Count | None
) -> Curve | None:
    """Per-image worst case over the families at each value they share."""
    shared = sorted(set.intersection(*(set(c.xs) for c in family_curves)))
    points = []
    for x in shared:
        parts = [p for c in family_curves for p in c.points if p.x == x]
        if not all(p.bits for p in parts):
            return None
        bits = worst_case([p.correct() for p in parts])
        points.append(CurvePoint(x, WORST_CASE, Count.of(bits), draws, encode_bits(bits)))
    return Curve(defense, WORST_CASE, axis, points, sa) if len(points) > 1 else None


def _x_label(axis: str, x: float) -> str:
    value = f"{x:g}"
    return f"ε={value}/255" if axis == "eps" else f"{value} steps"


def curves_markdown(found: Sequence[Curve], title: str | None = None) -> str:
    """One table per axis and family: rows = defenses, columns = the swept values; each cell is
    RA with its 95 % interval. Empty text when there is no curve."""
    if not found:
        return ""
    lines: list[str] = []
    for axis in AXES:
        on_axis = [c for c in found if c.axis == axis]
        if not on_axis:
            continue
        what = "ε" if axis == "eps" else "attack steps"
        lines += [f"## {title or f'RA against {what}'}", ""]
        for family in dict.fromkeys(c.family for c in on_axis):
            rows = [c for c in on_axis if c.family == family]
            xs = sorted({x for c in rows for x in c.xs})
            name = (
                "per-image worst case over the attack families"
                if family == WORST_CASE
                else f"`{family}`"
            )
            lines += [
                f"RA (%) against {what}, {name}; in brackets the 95 % Wilson interval.",
                "",
                "| Defense | SA | " + " | ".join(_x_label(axis, x) for x in xs) + " |",
                "|---|---:|" + "---:|" * len(xs),
            ]
            for c in rows:
                cells = []
                for x in xs:
                    p = next((p for p in c.points if p.x == x), None)
                    cells.append(
                        "–" if p is None else f"{p.ra.percent:.2f} {format_interval(*p.ci95)}"
                    )
                sa = "–" if c.sa is None else f"{c.sa.percent:.2f}"
                label = c.defense.replace("|", "\\|")
                lines.append(f"| {label} | {sa} | " + " | ".join(cells) + " |")
            lines.append("")
    return "\n".join(lines)


CURVE_COLUMNS = (
    "defense",
    "family",
    "axis",
    "x",
    "attack",
    "ra",
    "ra_ci95_low",
    "ra_ci95_high",
    "ra_correct",
    "ra_total",
)


def curves_csv(found: Sequence[Curve]) -> str:
    """One row per curve point."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(CURVE_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for c in found:
        for p in c.points:
            low, high = p.ci95
            writer.writerow(
                {
                    "defense": c.defense,
                    "family": c.family,
                    "axis": c.axis,
                    "x": p.x,
                    "attack": p.attack,
                    "ra": round(p.ra.percent, 4),
                    "ra_ci95_low": round(low, 4),
                    "ra_ci95_high": round(high, 4),
                    "ra_correct": p.ra.correct,
                    "ra_total": p.ra.total,
                }
            )
    return buf.getvalue()


def _panels(found: Sequence[Curve], prefix: str = "") -> list[tuple[str, list[Curve]]]:
    """One figure panel per attack family (the worst case last, as the curves come)."""
    out = []
    for family in dict.fromkeys(c.family for c in found):
        name = "worst case over the attacks" if family == WORST_CASE else family
        out.append((f"{prefix}{name}", [c for c in found if c.family == family]))
    return out


def write_curves(record: Mapping[str, Any], out_dir: str | Path, *, title: str = "") -> list[str]:
    """Write the ε and steps curves of an evaluation record into ``out_dir``: ``curve_<axis>.csv``
    and, with matplotlib, ``curve_<axis>.png`` / ``.svg``. Returns one line per axis to print
    (none when the run has no curve)."""
    from irad.evaluate.plots import matplotlib_missing, plot_curves

    out = Path(out_dir)
    lines = []
    for axis in AXES:
        found = curves(record, axis)
        if not found:
            continue
        csv_path = atomic_write_text(out / f"curve_{axis}.csv", curves_csv(found))
        figures = plot_curves(_panels(found), out / f"curve_{axis}", title=title)
        shown = ", ".join(str(p) for p in figures) if figures else str(matplotlib_missing())
        lines.append(f"RA against {axis}: {csv_path}; figures: {shown}")
    return lines


def plot_runs(
    results: Sequence[str | Path],
    prefix: str | Path,
    *,
    axis: str = "eps",
    defenses: Sequence[str] | None = None,
) -> tuple[str, list[str]]:
    """The curves of several runs side by side (``irad curves``): e.g. the same defenses under
    the oblivious and the adaptive threat, one panel per run and attack family.

    Writes ``prefix.csv`` and, with matplotlib, ``prefix.png`` / ``prefix.svg``.

    Returns:
        The curve tables as Markdown, and the paths written (or why the figures were skipped).

    Raises:
        ConfigError: a run has no curve along ``axis`` (for the chosen defenses).
    """
    from irad.evaluate.plots import matplotlib_missing, plot_curves
    from irad.evaluate.results import EvaluationResult

    panels, every, text = [], [], []
    for path in results:
        record = EvaluationResult.from_json(Path(path)).to_dict()
        found = [c for c in curves(record, axis) if not defenses or c.defense in defenses]
        if not found:
            which = f" for {', '.join(defenses)}" if defenses else ""
            example = "2,4,8,16" if axis == "eps" else "5,10,20,50"
            raise ConfigError(
                f"{path} has no RA-against-{axis} curve{which}: run irad evaluate with --{axis} "
                f"and several values (e.g. --{axis} {example})"
            )
        threat = record.get("threat", "?")
        text += [f"# {path} ({threat} threat)", "", curves_markdown(found)]
        panels += _panels(found, f"{threat}: ")
        every += found
    prefix = Path(prefix)
    written = [str(atomic_write_text(prefix.with_suffix(".csv"), curves_csv(every)))]
    figures = plot_curves(panels, prefix)
    written += [str(p) for p in figures] or [f"({matplotlib_missing()})"]
    return "\n".join(text), written
