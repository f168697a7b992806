"""The result of an evaluation and its three renderings: JSON (everything), CSV (one row per
defense and attack), Markdown (the paper's table layout).

``EvaluationResult.from_json(result.to_json())`` round-trips, so a saved ``result.json`` can be
re-rendered or merged into a larger table without rerunning anything.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from irad.errors import ConfigError
from irad.evaluate.cost import CostResult
from irad.evaluate.metrics import Count, average
from irad.evaluate.sanity import SanityCheck
from irad.evaluate.specs import AttackSpec, EvaluationConfig, SanityConfig
from irad.utils.io import atomic_write_text

SCHEMA = "irad.evaluation/1"
WORST_CASE = "worst-case"

CSV_COLUMNS = (
    "defense",
    "attack",
    "eps",
    "threat",
    "sa",
    "ra",
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


@dataclass
class AttackOutcome:
    """RA of one defense under one attack, with what produced it."""

    spec: AttackSpec
    ra: Count
    eot_samples: int = 1
    cache_key: str = ""
    attack_config: dict[str, Any] | None = None
    per_image: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "spec": self.spec.to_dict(),
            "ra": self.ra.to_dict(),
            "eot_samples": self.eot_samples,
            "cache_key": self.cache_key,
            "attack_config": self.attack_config,
            "per_image": self.per_image,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AttackOutcome:
        return cls(
            spec=AttackSpec.from_dict(data["spec"]),
            ra=Count.from_dict(data["ra"]),
            eot_samples=int(data.get("eot_samples", 1)),
            cache_key=data.get("cache_key", ""),
            attack_config=data.get("attack_config"),
            per_image=list(data.get("per_image", [])),
        )


@dataclass
class DefenseOutcome:
    """Every figure of one defense: SA, RA per attack, worst case, cost, gradients, sanity."""

    label: str
    config: dict[str, Any]
    stochastic: bool
    differentiable: bool
    fingerprint: str
    draws: int
    sa: Count
    attacks: dict[str, AttackOutcome] = field(default_factory=dict)
    worst_case: Count | None = None
    cost: CostResult | None = None
    gradients: dict[str, Any] | None = None
    sanity: dict[str, Any] | None = None
    checks: list[SanityCheck] = field(default_factory=list)
    clean_per_image: list[str] = field(default_factory=list)

    def ra(self, attack: str) -> Count:
        if attack == WORST_CASE and self.worst_case is not None:
            return self.worst_case
        if attack not in self.attacks:
            raise ConfigError(
                f"no attack {attack!r} for defense {self.label!r}; have: {', '.join(self.attacks)}"
            )
        return self.attacks[attack].ra

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "config": self.config,
            "stochastic": self.stochastic,
            "differentiable": self.differentiable,
            "fingerprint": self.fingerprint,
            "draws": self.draws,
            "sa": self.sa.to_dict(),
            "attacks": {
                k: {**v.to_dict(), "avg": average(self.sa, v.ra)} for k, v in self.attacks.items()
            },
            "worst_case": (
                None
                if self.worst_case is None
                else {**self.worst_case.to_dict(), "avg": average(self.sa, self.worst_case)}
            ),
            "cost": None if self.cost is None else self.cost.to_dict(),
            "gradients": self.gradients,
            "sanity": self.sanity,
            "checks": [c.to_dict() for c in self.checks],
            "clean_per_image": self.clean_per_image,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DefenseOutcome:
        worst = data.get("worst_case")
        cost = data.get("cost")
        return cls(
            label=data["label"],
            config=dict(data.get("config") or {}),
            stochastic=bool(data.get("stochastic", False)),
            differentiable=bool(data.get("differentiable", True)),
            fingerprint=data.get("fingerprint", ""),
            draws=int(data.get("draws", 1)),
            sa=Count.from_dict(data["sa"]),
            attacks={k: AttackOutcome.from_dict(v) for k, v in data.get("attacks", {}).items()},
            worst_case=None if worst is None else Count.from_dict(worst),
            cost=None if cost is None else CostResult.from_dict(cost),
            gradients=data.get("gradients"),
            sanity=data.get("sanity"),
            checks=[SanityCheck.from_dict(c) for c in data.get("checks", [])],
            clean_per_image=list(data.get("clean_per_image", [])),
        )


@dataclass
class EvaluationResult:
    """All figures of one evaluation run, with the configuration and environment that made them.

    Example:
        >>> result = evaluate_defenses(...)  # doctest: +SKIP
        >>> result.ra("none", "pgd:steps=20").percent  # doctest: +SKIP
        0.0
        >>> print(result.to_markdown())  # doctest: +SKIP
    """

    config: EvaluationConfig
    attacks: list[AttackSpec]
    defenses: dict[str, DefenseOutcome]
    classifier: dict[str, Any] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    classifier_cost: CostResult | None = None
    warnings: list[str] = field(default_factory=list)
    timing: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    randomness: dict[str, Any] = field(default_factory=dict)

    # -- access -----------------------------------------------------------------------------
    def _defense(self, defense: str) -> DefenseOutcome:
        if defense not in self.defenses:
            raise ConfigError(f"no defense {defense!r}; have: {', '.join(self.defenses)}")
        return self.defenses[defense]

    def sa(self, defense: str) -> Count:
        return self._defense(defense).sa

    def ra(self, defense: str, attack: str = WORST_CASE) -> Count:
        """RA of ``defense`` under ``attack`` (a label, or ``"worst-case"``)."""
        outcome = self._defense(defense)
        if attack == WORST_CASE and outcome.worst_case is None and len(outcome.attacks) == 1:
            return next(iter(outcome.attacks.values())).ra
        return outcome.ra(attack)

    def avg(self, defense: str, attack: str = WORST_CASE) -> float:
        return average(self.sa(defense), self.ra(defense, attack))

    @property
    def attack_labels(self) -> list[str]:
        return [a.label for a in self.attacks]

    @property
    def checks(self) -> list[SanityCheck]:
        return [c for d in self.defenses.values() for c in d.checks]

    # -- JSON -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        cfg = self.config.to_dict()
        return {
            "schema": SCHEMA,
            "protocol": self.config.protocol,
            "threat": self.config.threat,
            "seed": self.config.seed,
            "date_utc": self.environment.get("date_utc"),
            "config": cfg,
            "attacks": [a.to_dict() | {"label": a.label} for a in self.attacks],
            "classifier": self.classifier,
            "classifier_cost": None
            if self.classifier_cost is None
            else self.classifier_cost.to_dict(),
            "dataset": self.dataset,
            "environment": self.environment,
            "randomness": self.randomness,
            "warnings": list(self.warnings),
            "defenses": {k: v.to_dict() for k, v in self.defenses.items()},
            "timing": self.timing,
            "metadata": self.metadata,
        }

    def to_json(self) -> str:
        return json.dumps(_finite(self.to_dict()), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvaluationResult:
        if not isinstance(data, Mapping) or data.get("schema") != SCHEMA:
            found = data.get("schema") if isinstance(data, Mapping) else type(data).__name__
            raise ConfigError(f"not an irad evaluation result (schema {found!r}, want {SCHEMA})")
        try:
            return cls._from_dict(data)
        except (KeyError, TypeError, ValueError) as err:
            raise ConfigError(f"malformed irad evaluation result: {err!r}") from err

    @classmethod
    def _from_dict(cls, data: Mapping[str, Any]) -> EvaluationResult:
        cfg = dict(data["config"])
        sanity = cfg.pop("sanity_config", None)
        config = EvaluationConfig(
            **cfg, sanity_config=SanityConfig(**sanity) if sanity else SanityConfig()
        )
        cost = data.get("classifier_cost")
        return cls(
            config=config,
            attacks=[AttackSpec.from_dict(a) for a in data.get("attacks", [])],
            defenses={k: DefenseOutcome.from_dict(v) for k, v in data["defenses"].items()},
            classifier=dict(data.get("classifier") or {}),
            dataset=dict(data.get("dataset") or {}),
            environment=dict(data.get("environment") or {}),
            classifier_cost=None if cost is None else CostResult.from_dict(cost),
            warnings=list(data.get("warnings", [])),
            timing=dict(data.get("timing") or {}),
            metadata=dict(data.get("metadata") or {}),
            randomness=dict(data.get("randomness") or {}),
        )

    @classmethod
    def from_json(cls, text: str | Path) -> EvaluationResult:
        """Parse JSON text, or read it from a path."""
        if isinstance(text, Path) or (isinstance(text, str) and not text.lstrip().startswith("{")):
            text = Path(text).read_text()
        return cls.from_dict(json.loads(text))

    # -- CSV --------------------------------------------------------------------------------
    def rows(self) -> list[dict[str, Any]]:
        """One flat row per (defense, attack), plus a worst-case row per defense."""
        out = []
        for label, d in self.defenses.items():
            columns: list[tuple[str, float | None, Count | None]] = [
                (name, a.spec.eps, a.ra) for name, a in d.attacks.items()
            ]
            if d.worst_case is not None:
                columns.append((WORST_CASE, None, d.worst_case))
            if not columns:
                columns.append(("", None, None))
            for attack, eps, ra in columns:
                out.append(
                    {
                        "defense": label,
                        "attack": attack,
                        "eps": "" if eps is None else eps,
                        "threat": self.config.threat,
                        "sa": round(d.sa.percent, 4),
                        "ra": "" if ra is None else round(ra.percent, 4),
                        "avg": "" if ra is None else round(average(d.sa, ra), 4),
                        "sa_correct": d.sa.correct,
                        "sa_total": d.sa.total,
                        "ra_correct": "" if ra is None else ra.correct,
                        "ra_total": "" if ra is None else ra.total,
                        "cost_ms_per_image": ""
                        if d.cost is None
                        else round(d.cost.ms_per_image, 4),
                        "stochastic": d.stochastic,
                        "draws": d.draws,
                        "n": self.dataset.get("n", ""),
                        "seed": self.config.seed,
                        "protocol": self.config.protocol,
                    }
                )
        return out

    def to_csv(self) -> str:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(CSV_COLUMNS), lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows())
        return buf.getvalue()

    # -- Markdown ---------------------------------------------------------------------------
    def to_markdown(self) -> str:
        """The paper's layout: rows = defenses; SA / RA / Avg per attack (and worst case); cost."""
        groups = list(self.attack_labels)
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
            f"# Robustness evaluation: {self.config.threat} threat",
            "",
            self.caption(),
            "",
            "| " + " | ".join(header) + " |",
            "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
        ]
        for label, d in self.defenses.items():
            name = label + (
                f" (random, {d.draws} draw{'s' * (d.draws > 1)})" if d.stochastic else ""
            )
            cells = [name.replace("|", "\\|")]
            for g in groups:
                ra = self.ra(label, g)
                cells += [_pct(d.sa), _pct(ra), f"{average(d.sa, ra):.2f}"]
            if not groups:
                cells.append(_pct(d.sa))
            cells.append("–" if d.cost is None else f"{d.cost.ms_per_image:.3f}")
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", *self._notes()]
        if self.warnings:
            lines += ["", "## Warnings", ""] + [f"- {w}" for w in self.warnings]
        if self.config.sanity:
            lines += ["", "## Sanity checks (Carlini et al. 2019)", ""]
            for label, d in self.defenses.items():
                status = [c.status for c in d.checks]
                line = (
                    f"- {label}: {status.count('pass')} passed, {status.count('warn')} "
                    f"warning(s), {status.count('n/a')} not applicable"
                )
                if d.sanity and "large_eps" in d.sanity:
                    large, bb = d.sanity["large_eps"], d.sanity["blackbox"]
                    line += (
                        f"; RA {large['ra']['percent']:.2f}% under {large['attack']}, "
                        f"{bb['ra']['percent']:.2f}% under {bb['attack']} (black-box) vs "
                        f"{bb['whitebox_ra']['percent']:.2f}% under {bb['whitebox']}"
                    )
                lines.append(line)
        return "\n".join(lines) + "\n"

    def caption(self) -> str:
        cfg = self.config
        data = self.dataset
        clf = self.classifier
        attacks = ", ".join(self.attack_labels) or "none"
        parts = [
            f"Protocol **{cfg.protocol}**; threat {cfg.threat}; attacks {attacks} (ε in /255)",
            f"classifier {clf.get('name', '?')} (sha256 {str(clf.get('fingerprint', ''))[:12]})",
            f"data {data.get('name', '?')}: {data.get('description', '')} "
            f"(n = {data.get('n', '?')}, sha256 {str(data.get('fingerprint', ''))[:12]})",
            f"seed {cfg.seed}",
        ]
        if cfg.threat in ("bpda-eot", "adaptive"):
            parts.append(f"EOT samples {cfg.eot_samples} (random defenses)")
        env = self.environment
        parts.append(
            f"{env.get('date_utc', '')}, irad {env.get('irad')}, torch {env.get('torch')}, "
            f"torchattacks {env.get('torchattacks')}"
        )
        return "; ".join(parts) + "."

    def _notes(self) -> list[str]:
        parts = ["SA, RA, Avg = (SA + RA) / 2 in %."]
        if len(self.attacks) > 1:
            parts.append("Worst case: an image counts as robust only if it survives every attack.")
        if any(d.stochastic for d in self.defenses.values()):
            parts.append(
                "Random defenses are scored with fresh randomness, averaged over their draws."
            )
        cost = next((d.cost for d in self.defenses.values() if d.cost is not None), None)
        if cost is not None:
            parts.append(
                f"Cost: the defense alone, median of {cost.repeats} timed batches of "
                f"{cost.batch_size} images after {cost.warmup} warm-up, {cost.threads} threads, "
                f"{cost.device}."
            )
        if self.classifier_cost is not None:
            parts.append(
                f"The classifier alone costs {self.classifier_cost.ms_per_image:.3f} ms/img."
            )
        return [" ".join(parts)]

    # -- files ------------------------------------------------------------------------------
    def save(self, out_dir: str | Path) -> dict[str, Path]:
        """Atomically write ``result.json``, ``result.csv`` and ``table.md`` into ``out_dir``."""
        out = Path(out_dir)
        return {
            "json": atomic_write_text(out / "result.json", self.to_json()),
            "csv": atomic_write_text(out / "result.csv", self.to_csv()),
            "markdown": atomic_write_text(out / "table.md", self.to_markdown()),
        }


def _pct(count: Count) -> str:
    return f"{count.percent:.2f}"


def _finite(obj: Any) -> Any:
    """JSON has no NaN: write non-finite floats as null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj
