"""The figures of an evaluation as data: per attack, per defense, per run, and the sanity checks.

``EvaluationResult.from_json(result.to_json())`` round-trips, so a saved ``result.json`` can be
re-rendered (:mod:`irad.evaluate.report`) or merged into a larger table without rerunning
anything.

Per-image results are kept for every figure: for each defense, which images it classifies
correctly and the label it predicts, on the clean images (``clean_per_image``,
``clean_predicted``) and under each attack (``attacks[a].per_image``, ``attacks[a].predicted``),
one row per draw, and the per-image worst case over the attacks (``worst_case_per_image``); the
true labels are ``labels``. Column ``i`` is image ``i`` of the evaluation set (batch ranges in
``randomness.batches``). ``per_image.csv`` has the same as one row per (defense, attack, draw,
image), ready for a paired comparison or a bootstrap. Beside every SA and RA the record holds its
95 % interval (``ci95``, :mod:`irad.evaluate.intervals`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor

from irad.errors import ConfigError
from irad.evaluate import report
from irad.evaluate.config import EvaluationConfig
from irad.evaluate.cost import CostResult
from irad.evaluate.intervals import INTERVAL_METHOD
from irad.evaluate.metrics import Count, average, decode_bits
from irad.evaluate.specs import AttackSpec
from irad.utils.io import atomic_write_text

SCHEMA = "irad.evaluation/1"
WORST_CASE = report.WORST_CASE

PASS, WARN, NOT_APPLICABLE = "pass", "warn", "n/a"


@dataclass(frozen=True)
class SanityCheck:
    """The outcome of one sanity check for one defense (``status``: pass, warn or n/a)."""

    check: str
    status: str
    message: str
    defense: str = ""

    @property
    def failed(self) -> bool:
        return self.status == WARN

    def warning_line(self) -> str:
        where = f"[{self.defense}] " if self.defense else ""
        return f"WARNING {where}{self.check}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SanityCheck:
        return cls(**data)


@dataclass
class AttackOutcome:
    """RA of one defense under one attack, with what produced it.

    Attributes:
        spec: the attack as run (after the threat model adapted it to the defense).
        ra: robust accuracy as a count over images x draws.
        eot_samples: forward passes averaged per gradient by the attack surface (1: no EOT).
        adapted: parameters the threat model changed for this defense (``{"version": "rand"}``).
        cache_key: key of the adversarial images in the cache.
        attack_config: the attack's full configuration as built.
        seeds: the attack's seed for each batch of images (batch ``i`` covers the images of
            ``randomness["batches"][i]``); ``build_attack(...)(x, y, seed=seeds[i])`` rebuilds
            them.
        seed_key: what the seeds derive from (see :data:`irad.evaluate.seeds.SEED_SCHEME`).
        per_image: correctness per draw, one '0'/'1' string per draw.
        predicted: the label the defended classifier predicts, per draw and image.
    """

    spec: AttackSpec
    ra: Count
    eot_samples: int = 1
    adapted: dict[str, Any] = field(default_factory=dict)
    cache_key: str = ""
    attack_config: dict[str, Any] | None = None
    seeds: list[int] = field(default_factory=list)
    seed_key: str = ""
    per_image: list[str] = field(default_factory=list)
    predicted: list[list[int]] = field(default_factory=list)

    def to_dict(self, draws: int = 1) -> dict[str, Any]:
        return {
            "spec": self.spec.to_dict(),
            "ra": _with_interval(self.ra, draws),
            "eot_samples": self.eot_samples,
            "adapted": self.adapted,
            "cache_key": self.cache_key,
            "attack_config": self.attack_config,
            "seeds": self.seeds,
            "seed_key": self.seed_key,
            "per_image": self.per_image,
            "predicted": self.predicted,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AttackOutcome:
        return cls(
            spec=AttackSpec.from_dict(data["spec"]),
            ra=Count.from_dict(data["ra"]),
            eot_samples=int(data.get("eot_samples", 1)),
            adapted=dict(data.get("adapted") or {}),
            cache_key=data.get("cache_key", ""),
            attack_config=data.get("attack_config"),
            seeds=[int(s) for s in data.get("seeds", [])],
            seed_key=data.get("seed_key", ""),
            per_image=list(data.get("per_image", [])),
            predicted=[list(map(int, row)) for row in data.get("predicted", [])],
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
    clean_predicted: list[list[int]] = field(default_factory=list)
    worst_case_per_image: list[str] = field(default_factory=list)

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
            "sa": _with_interval(self.sa, self.draws),
            "attacks": {
                k: {**v.to_dict(self.draws), "avg": average(self.sa, v.ra)}
                for k, v in self.attacks.items()
            },
            "worst_case": (
                None
                if self.worst_case is None
                else {
                    **_with_interval(self.worst_case, self.draws),
                    "avg": average(self.sa, self.worst_case),
                }
            ),
            "cost": None if self.cost is None else self.cost.to_dict(),
            "gradients": self.gradients,
            "sanity": self.sanity,
            "checks": [c.to_dict() for c in self.checks],
            "clean_per_image": self.clean_per_image,
            "clean_predicted": self.clean_predicted,
            "worst_case_per_image": self.worst_case_per_image,
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
            clean_predicted=[list(map(int, row)) for row in data.get("clean_predicted", [])],
            worst_case_per_image=list(data.get("worst_case_per_image", [])),
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
    #: The true label of every evaluation image, in order (column ``i`` of the per-image rows).
    labels: list[int] = field(default_factory=list)

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
        return {
            "schema": SCHEMA,
            "protocol": self.config.protocol,
            "protocol_description": self.config.protocol_description,
            "threat": self.config.threat,
            "seed": self.config.seed,
            "date_utc": self.environment.get("date_utc"),
            "config": self.config.to_dict(),
            "attacks": [a.to_dict() | {"label": a.label} for a in self.attacks],
            "classifier": self.classifier,
            "classifier_cost": None
            if self.classifier_cost is None
            else self.classifier_cost.to_dict(),
            "dataset": self.dataset,
            "environment": self.environment,
            "randomness": self.randomness,
            "interval": INTERVAL_METHOD,
            "labels": self.labels,
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
        cost = data.get("classifier_cost")
        return cls(
            config=EvaluationConfig.from_dict(dict(data["config"])),
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
            labels=[int(v) for v in data.get("labels", [])],
        )

    @classmethod
    def from_json(cls, text: str | Path) -> EvaluationResult:
        """Parse JSON text, or read it from a path."""
        if isinstance(text, Path) or (isinstance(text, str) and not text.lstrip().startswith("{")):
            text = Path(text).read_text()
        return cls.from_dict(json.loads(text))

    # -- renderings (irad.evaluate.report) ----------------------------------------------------
    def rows(self) -> list[dict[str, Any]]:
        """One flat row per (defense, attack), plus a worst-case row per defense."""
        return report.rows(self.to_dict())

    def to_csv(self) -> str:
        return report.csv_text(self.to_dict())

    def to_markdown(self) -> str:
        """The paper's layout: rows = defenses; SA / RA / Avg per attack (and worst case); cost."""
        return report.markdown(self.to_dict())

    def per_image(self, defense: str, attack: str | None = None) -> Tensor:
        """Per-image correctness ``(draws, N)`` of ``defense`` on the clean images
        (``attack=None``), under ``attack``, or in the worst case (``"worst-case"``)."""
        d = self._defense(defense)
        if attack is None:
            return decode_bits(d.clean_per_image)
        if attack == WORST_CASE and d.worst_case_per_image:
            return decode_bits(d.worst_case_per_image)
        if attack == WORST_CASE and len(d.attacks) == 1:
            return decode_bits(next(iter(d.attacks.values())).per_image)
        if attack not in d.attacks:
            raise ConfigError(
                f"no attack {attack!r} for defense {defense!r}; have: {', '.join(d.attacks)}"
            )
        return decode_bits(d.attacks[attack].per_image)

    def per_image_csv(self) -> str:
        """One row per (defense, attack, draw, image): correctness and predicted label."""
        return report.per_image_csv(self.to_dict())

    def caption(self) -> str:
        """One paragraph: protocol, threat, attacks, classifier, data, seeds, EOT, versions."""
        return report.caption(self.to_dict())

    # -- files ------------------------------------------------------------------------------
    def save(self, out_dir: str | Path) -> dict[str, Path]:
        """Atomically write ``result.json``, ``result.csv``, ``per_image.csv`` and ``table.md``
        into ``out_dir``."""
        out = Path(out_dir)
        return {
            "json": atomic_write_text(out / "result.json", self.to_json()),
            "csv": atomic_write_text(out / "result.csv", self.to_csv()),
            "per_image": atomic_write_text(out / "per_image.csv", self.per_image_csv()),
            "markdown": atomic_write_text(out / "table.md", self.to_markdown()),
        }


def _with_interval(count: Count, draws: int) -> dict[str, Any]:
    """``count.to_dict()`` with its 95 % interval (``ci95``, in %)."""
    low, high = count.ci95(draws)
    return {**count.to_dict(), "ci95": [round(low, 4), round(high, 4)]}


def _finite(obj: Any) -> Any:
    """JSON has no NaN: write non-finite floats as null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj
