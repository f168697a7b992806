"""Renderings of an evaluation record: CSV (one row per defense and attack) and Markdown (the
paper's table layout, with a caption that says what ran).

Every function takes the JSON record (``EvaluationResult.to_dict()``, or a ``result.json`` read
back), so a saved run can be re-rendered without the classes that made it::

    >>> import json                                                  # doctest: +SKIP
    >>> print(markdown(json.load(open("results/x/result.json"))))    # doctest: +SKIP
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from typing import Any

from irad.evaluate.curves import AXES, curves, curves_markdown
from irad.evaluate.intervals import format_interval
from irad.evaluate.metrics import Count, average

WORST_CASE = "worst-case"

CSV_COLUMNS = (
    "defense",
    "attack",
    "eps",
    "threat",
    "sa",
    "sa_ci95_low",
    "sa_ci95_high",
    "ra",
    "ra_ci95_low",
    "ra_ci95_high",
    "avg",
    "sa_correct",
    "sa_total",
    "ra_correct",
    "ra_total",
    "cost_ms_per_image",
    "stochastic",
    "draws",
    "n",
    "seed",
    "protocol",
)

Record = Mapping[str, Any]


def _count(data: Mapping[str, Any]) -> Count:
    return Count.from_dict(data)


def ra(defense: Record, attack: str) -> Count:
    """RA of one defense's record under ``attack`` (a label, or ``"worst-case"``)."""
    attacks = defense.get("attacks", {})
    if attack == WORST_CASE:
        if defense.get("worst_case") is not None:
            return _count(defense["worst_case"])
        if len(attacks) == 1:
            return _count(next(iter(attacks.values()))["ra"])
    return _count(attacks[attack]["ra"])


# -- CSV ------------------------------------------------------------------------------------------
def rows(record: Record) -> list[dict[str, Any]]:
    """One flat row per (defense, attack), plus a worst-case row per defense."""
    out = []
    cfg = record.get("config", {})
    n = record.get("dataset", {}).get("n", "")
    for label, d in record.get("defenses", {}).items():
        sa = _count(d["sa"])
        columns: list[tuple[str, float | None, Count | None]] = [
            (name, a["spec"].get("eps"), _count(a["ra"])) for name, a in d["attacks"].items()
        ]
        if d.get("worst_case") is not None:
            columns.append((WORST_CASE, None, _count(d["worst_case"])))
        if not columns:
            columns.append(("", None, None))
        cost = d.get("cost")
        draws = int(d.get("draws", 1))
        sa_low, sa_high = sa.ci95(draws)
        for attack, eps, robust in columns:
            ra_low, ra_high = robust.ci95(draws) if robust is not None else ("", "")
            out.append(
                {
                    "defense": label,
                    "attack": attack,
                    "eps": "" if eps is None else eps,
                    "threat": record.get("threat", cfg.get("threat")),
                    "sa": round(sa.percent, 4),
                    "sa_ci95_low": _round(sa_low),
                    "sa_ci95_high": _round(sa_high),
                    "ra": "" if robust is None else round(robust.percent, 4),
                    "ra_ci95_low": _round(ra_low),
                    "ra_ci95_high": _round(ra_high),
                    "avg": "" if robust is None else round(average(sa, robust), 4),
                    "sa_correct": sa.correct,
                    "sa_total": sa.total,
                    "ra_correct": "" if robust is None else robust.correct,
                    "ra_total": "" if robust is None else robust.total,
                    "cost_ms_per_image": "" if cost is None else round(cost["ms_per_image"], 4),
                    "stochastic": bool(d.get("stochastic", False)),
                    "draws": d.get("draws", 1),
                    "n": n,
                    "seed": record.get("seed", cfg.get("seed")),
                    "protocol": record.get("protocol", cfg.get("protocol")),
                }
            )
    return out


def csv_text(record: Record) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(CSV_COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows(record))
    return buf.getvalue()


def _round(value: float | str) -> float | str:
    if isinstance(value, str) or value != value:  # "" or NaN
        return ""
    return round(value, 4)


PER_IMAGE_COLUMNS = ("image", "label", "defense", "attack", "draw", "correct", "predicted")


def per_image_rows(record: Record) -> list[dict[str, Any]]:
    """One row per (defense, attack, draw, image): is it classified correctly, as what.

    ``attack`` is ``clean`` for the clean images and ``worst-case`` for the per-image worst case
    over the attacks (no predicted label there). ``image`` is the index in the evaluation set.
    """
    labels = list(record.get("labels") or [])
    out: list[dict[str, Any]] = []

    def add(defense: str, attack: str, bits: list[str], predicted: list[list[int]]) -> None:
        for draw, row in enumerate(bits):
            preds = predicted[draw] if draw < len(predicted) else []
            for i, bit in enumerate(row):
                out.append(
                    {
                        "image": i,
                        "label": labels[i] if i < len(labels) else "",
                        "defense": defense,
                        "attack": attack,
                        "draw": draw,
                        "correct": int(bit == "1"),
                        "predicted": preds[i] if i < len(preds) else "",
                    }
                )

    for label, d in record.get("defenses", {}).items():
        add(label, "clean", d.get("clean_per_image", []), d.get("clean_predicted", []))
        for name, a in d.get("attacks", {}).items():
            add(label, name, a.get("per_image", []), a.get("predicted", []))
        if d.get("worst_case_per_image"):
            add(label, WORST_CASE, d["worst_case_per_image"], [])
    return out


def per_image_csv(record: Record) -> str:
    """:func:`per_image_rows` as CSV text."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(PER_IMAGE_COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(per_image_rows(record))
    return buf.getvalue()


# -- Markdown -------------------------------------------------------------------------------------
def markdown(record: Record) -> str:
    """The paper's layout: rows = defenses; SA / RA / Avg per attack (and worst case); cost."""
    groups = [a["label"] for a in record.get("attacks", [])]
    if len(groups) > 1:
        groups.append(WORST_CASE)
    header = ["Defense"]
    for g in groups:
        suffix = f" ({g})" if len(groups) > 1 else ""
        header += [f"SA{suffix}", f"RA{suffix}", f"Avg{suffix}"]
    if not groups:
        header.append("SA")
    header.append("Cost (ms/img)")
    lines = [
        f"# Robustness evaluation: {record.get('threat')} threat",
        "",
        caption(record),
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    for label, d in record.get("defenses", {}).items():
        draws = int(d.get("draws", 1))
        random = f" (random, {draws} draw{'s' * (draws > 1)})" if d.get("stochastic") else ""
        cells = [(label + random).replace("|", "\\|")]
        sa = _count(d["sa"])
        for g in groups:
            robust = ra(d, g)
            cells += [_pct(sa, draws), _pct(robust, draws), f"{average(sa, robust):.2f}"]
        if not groups:
            cells.append(_pct(sa, draws))
        cost = d.get("cost")
        cells.append("–" if cost is None else f"{cost['ms_per_image']:.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", notes(record)]
    for axis in AXES:
        text = curves_markdown(curves(record, axis))
        if text:
            lines += ["", text.rstrip()]
    warnings = record.get("warnings", [])
    if warnings:
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in warnings]
    if record.get("config", {}).get("sanity"):
        lines += ["", "## Sanity checks (Carlini et al. 2019)", ""]
        lines += [_sanity_line(label, d) for label, d in record.get("defenses", {}).items()]
    return "\n".join(lines) + "\n"


def _sanity_line(label: str, d: Record) -> str:
    status = [c["status"] for c in d.get("checks", [])]
    line = (
        f"- {label}: {status.count('pass')} passed, {status.count('warn')} "
        f"warning(s), {status.count('n/a')} not applicable"
    )
    sanity = d.get("sanity") or {}
    if "large_eps" in sanity:
        large, bb = sanity["large_eps"], sanity["blackbox"]
        line += (
            f"; RA {large['ra']['percent']:.2f}% under {large['attack']}, "
            f"{bb['ra']['percent']:.2f}% under {bb['attack']} (black-box) vs "
            f"{bb['whitebox_ra']['percent']:.2f}% under {bb['whitebox']}"
        )
    return line


def caption(record: Record) -> str:
    """Protocol, threat, attacks, classifier, data, seeds, EOT where used, versions."""
    cfg = record.get("config", {})
    data = record.get("dataset", {})
    clf = record.get("classifier", {})
    attacks = ", ".join(a["label"] for a in record.get("attacks", [])) or "none"
    protocol = record.get("protocol_description") or f"{record.get('protocol')} settings"
    parts = [
        f"Settings: {protocol}; threat {record.get('threat')}; attacks {attacks} (ε in /255)",
        f"classifier {clf.get('name', '?')} (sha256 {str(clf.get('fingerprint', ''))[:12]})",
        f"data {data.get('name', '?')}: {data.get('description', '')} "
        f"(n = {data.get('n', '?')}, sha256 {str(data.get('fingerprint', ''))[:12]})",
        f"base seed {record.get('seed', cfg.get('seed'))} (per-batch seeds in result.json)",
    ]
    parts += _eot_parts(record)
    env = record.get("environment", {})
    parts.append(
        f"{env.get('date_utc', '')}, irad {env.get('irad')}, torch {env.get('torch')}, "
        f"torchattacks {env.get('torchattacks')}"
    )
    return "; ".join(parts) + "."


def _eot_parts(record: Record) -> list[str]:
    """EOT and attack adaptations, only where they were used."""
    eot: dict[int, list[str]] = {}
    adapted: list[str] = []
    for label, d in record.get("defenses", {}).items():
        for name, a in d.get("attacks", {}).items():
            samples = int(a.get("eot_samples", 1))
            if samples > 1 and label not in eot.setdefault(samples, []):
                eot[samples].append(label)
            if a.get("adapted"):
                changes = ",".join(f"{k}={v}" for k, v in a["adapted"].items())
                adapted.append(f"{name} with {changes} on {label}")
    out = [f"EOT over {k} samples per gradient on {', '.join(v)}" for k, v in eot.items()]
    if adapted:
        # e.g. AutoAttack's rand version on a random defense, APGD's active set on a
        # deterministic one (see ThreatModel.adapt)
        out.append("adapted by the threat model: " + "; ".join(adapted))
    return out


def notes(record: Record) -> str:
    """The paragraph under the table: what SA / RA / Avg, the worst case and the cost mean."""
    defenses = record.get("defenses", {})
    parts = [
        "SA, RA, Avg = (SA + RA) / 2 in %; in brackets the 95 % Wilson interval (binomial over "
        "the images)."
    ]
    if len(record.get("attacks", [])) > 1:
        parts.append("Worst case: an image counts as robust only if it survives every attack.")
    if any(d.get("stochastic") for d in defenses.values()):
        parts.append("Random defenses are scored with fresh randomness, averaged over their draws.")
    cost = next((d["cost"] for d in defenses.values() if d.get("cost") is not None), None)
    if cost is not None:
        parts.append(
            f"Cost: the defense alone, median of {cost['repeats']} timed batches of "
            f"{cost['batch_size']} images after {cost['warmup']} warm-up, {cost['threads']} "
            f"threads, {cost['device']}."
        )
    clf_cost = record.get("classifier_cost")
    if clf_cost is not None:
        parts.append(f"The classifier alone costs {clf_cost['ms_per_image']:.3f} ms/img.")
    return " ".join(parts)


def _pct(count: Count, draws: int | None = None) -> str:
    """``91.00`` or, given ``draws``, ``91.00 [89.1, 92.6]`` (the 95 % interval beside it)."""
    if draws is None:
        return f"{count.percent:.2f}"
    return f"{count.percent:.2f} {format_interval(*count.ci95(draws))}"
