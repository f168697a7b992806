"""What to evaluate, as data: attack and defense specs parsed from ``name:k=v,...`` strings, and
the :class:`EvaluationConfig` that fixes every other setting of a run.

The same strings work on the command line and in Python::

    >>> AttackSpec.parse("pgd:steps=20,alpha=2")
    AttackSpec(name='pgd', eps=8.0, params={'steps': 20, 'alpha': 2}, alias=None)
    >>> AttackSpec.parse("pgd:eps=4").label
    'pgd:eps=4'
    >>> parse_spec("jpeg:quality=75")
    ('jpeg', {'quality': 75})
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from irad.errors import ConfigError

#: Threat models, weakest first (see :func:`irad.attacks.attack_surface`).
THREATS: tuple[str, ...] = ("oblivious", "bpda", "bpda-eot", "adaptive")
#: Threats in which the attack differentiates through the defense (a white-box adversary).
WHITE_BOX_THREATS: frozenset[str] = frozenset({"bpda", "bpda-eot", "adaptive"})
#: Attacks that use no gradients: they must never beat a working white-box attack.
BLACK_BOX_ATTACKS: frozenset[str] = frozenset({"square"})
#: Largest ε accepted, in /255 (64/255 is the sanity check's "everything breaks" budget).
MAX_EPS = 255.0


def parse_value(text: str) -> Any:
    """Convert a ``k=v`` value: int, then float, then bool/None words, else the string itself.

    Example:
        >>> [parse_value(v) for v in ("20", "2.5", "true", "none", "rand")]
        [20, 2.5, True, None, 'rand']
    """
    text = text.strip()
    lowered = text.lower()
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    if lowered in ("none", "null"):
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        return text
    if not math.isfinite(value):
        raise ConfigError(f"value {text!r} is not a finite number")
    return value


def parse_spec(text: str) -> tuple[str, dict[str, Any]]:
    """Split ``name:k=v,k=v`` into a name and typed keyword arguments.

    Raises:
        ConfigError: empty name, an item without ``=``, or a repeated key.
    """
    if not isinstance(text, str) or not text.strip():
        raise ConfigError("empty spec: expected 'name' or 'name:key=value,key=value'")
    name, _, rest = text.strip().partition(":")
    name = name.strip()
    if not name:
        raise ConfigError(f"spec {text!r} has no name before ':'")
    params: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ConfigError(
                f"bad item {item!r} in spec {text!r}: expected key=value, "
                "e.g. 'pgd:steps=20,alpha=2'"
            )
        if key in params:
            raise ConfigError(f"key {key!r} given twice in spec {text!r}")
        params[key] = parse_value(value)
    return name, params


def format_spec(name: str, params: Mapping[str, Any]) -> str:
    """Inverse of :func:`parse_spec` (``name`` alone when there are no parameters)."""
    if not params:
        return name
    return name + ":" + ",".join(f"{k}={_format_value(v)}" for k, v in params.items())


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def canonical_json(obj: Any) -> str:
    """Key-sorted compact JSON: equal settings always give equal text (and equal hashes)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def digest(obj: Any) -> str:
    """sha256 hex of :func:`canonical_json` of ``obj``."""
    return hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()


def attack_presets() -> dict[str, tuple[str, dict[str, Any]]]:
    """Named attack settings usable as attack names: ``alias -> (attack name, parameters)``.

    ``bpda-pgd`` is the paper's BPDA attack (PGD, 10 steps of 1/255, no random start; run it
    with ``--threat bpda``) and ``bpda-pgd-strong`` the CPU protocol's 100-step variant. The
    settings come from :data:`irad.attacks.PAPER_BPDA` and :data:`irad.attacks.STRONG_BPDA`.
    """
    from irad.attacks import PAPER_BPDA, STRONG_BPDA

    out = {}
    for alias, preset in (("bpda-pgd", PAPER_BPDA), ("bpda-pgd-strong", STRONG_BPDA)):
        out[alias] = (str(preset["name"]), {k: v for k, v in preset.items() if k != "name"})
    return out


@dataclass(frozen=True)
class AttackSpec:
    """One attack to run: registry name, ε in /255, and the attack's other parameters.

    ``label`` is how the attack is named in tables (the spec string, ``eps`` shown only when it
    differs from the default 8). Parameters are passed unchanged to
    :func:`irad.attacks.build_attack`, so their meaning (e.g. ``alpha`` in /255) is the attack's.
    A preset name (:func:`attack_presets`, e.g. ``bpda-pgd``) expands to its attack and
    parameters and keeps its name as ``alias`` for the label.

    Example:
        >>> spec = AttackSpec.parse("pgd:steps=20,alpha=2")
        >>> spec.eps, spec.params
        (8.0, {'steps': 20, 'alpha': 2})
        >>> spec.replace(eps=16, steps=10).label
        'pgd:steps=10,alpha=2,eps=16'
        >>> bpda = AttackSpec.parse("bpda-pgd")
        >>> bpda.name, bpda.params, bpda.label
        ('pgd', {'steps': 10, 'alpha': 1.0, 'random_start': False}, 'bpda-pgd')
    """

    name: str
    eps: float = 8.0
    params: dict[str, Any] = field(default_factory=dict)
    alias: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError("attack name must be a non-empty string")
        eps = self.eps
        if isinstance(eps, bool) or not isinstance(eps, int | float) or not math.isfinite(eps):
            raise ConfigError(f"attack eps must be a number in /255 units, got {eps!r}")
        if not 0 < eps <= MAX_EPS:
            raise ConfigError(
                f"attack eps must be in (0, {MAX_EPS:g}] (units of 1/255, e.g. eps=8 for 8/255), "
                f"got {eps}"
            )
        if "eps" in self.params:
            raise ConfigError("give eps as AttackSpec(eps=...), not inside params")
        object.__setattr__(self, "eps", float(eps))
        object.__setattr__(self, "params", dict(self.params))

    @classmethod
    def parse(cls, text: str, default_eps: float = 8.0) -> AttackSpec:
        """Parse ``name[:k=v,...]``; an ``eps`` item sets ε (in /255), else ``default_eps``."""
        name, params = parse_spec(text)
        eps = params.pop("eps", default_eps)
        key = name.strip().lower().replace("_", "-")
        if key.startswith("bpda-"):
            presets = attack_presets()
            if key in presets:
                attack, preset = presets[key]
                return cls(name=attack, eps=eps, params={**preset, **params}, alias=key)
        return cls(name=name, eps=eps, params=params)

    @property
    def label(self) -> str:
        params = dict(self.params)
        name = self.name
        if self.alias is not None:
            name = self.alias
            preset = attack_presets().get(self.alias, ("", {}))[1]
            params = {k: v for k, v in params.items() if k not in preset or preset[k] != v}
        if self.eps != 8.0:
            params["eps"] = self.eps
        return format_spec(name, params)

    @property
    def blackbox(self) -> bool:
        """True for gradient-free attacks (e.g. Square)."""
        return self.name.strip().lower() in BLACK_BOX_ATTACKS

    def replace(self, *, eps: float | None = None, **params: Any) -> AttackSpec:
        """A copy with ``eps`` and/or parameters changed."""
        return AttackSpec(
            self.name, self.eps if eps is None else eps, {**self.params, **params}, self.alias
        )

    def to_dict(self) -> dict[str, Any]:
        """Name, ε and parameters (and the preset alias, if any)."""
        out: dict[str, Any] = {"name": self.name, "eps": self.eps, "params": dict(self.params)}
        if self.alias is not None:
            out["alias"] = self.alias
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AttackSpec:
        return cls(
            data["name"], data.get("eps", 8.0), dict(data.get("params", {})), data.get("alias")
        )


def as_attack_spec(spec: AttackSpec | str, default_eps: float = 8.0) -> AttackSpec:
    """Accept an :class:`AttackSpec` or its string form."""
    if isinstance(spec, AttackSpec):
        return spec
    if isinstance(spec, str):
        return AttackSpec.parse(spec, default_eps=default_eps)
    raise ConfigError(f"an attack must be an AttackSpec or a string, got {type(spec).__name__}")


def check_threat(threat: str) -> str:
    """Return the threat's canonical name, or raise :class:`ConfigError` listing the known ones."""
    key = str(threat).strip().lower().replace("_", "-")
    if key not in THREATS:
        raise ConfigError(f"unknown threat {threat!r}; choose one of: {', '.join(THREATS)}")
    return key


@dataclass(frozen=True)
class SanityConfig:
    """Settings of the optional sanity checks (Carlini et al. 2019, "On Evaluating Adversarial
    Robustness").

    Attributes:
        attack: the white-box attack run on the ε x steps grid (a PGD-like attack with ``steps``).
        step_param, steps_param: names of the attack's step-size and step-count parameters; the
            grid uses step size ``2.5 * eps / steps`` (Madry et al.), so every setting can reach
            the edge of its ε-ball.
        eps_grid, steps_grid: the grid, in /255 and steps. RA must not rise along either axis.
        large_eps: an ε (in /255) at which a white-box attack must leave RA near zero.
        large_eps_max_ra: "near zero", in percent.
        blackbox: a gradient-free attack run on the deployed model (defense + classifier); it must
            not beat the white-box attack at ``reference_eps``.
        reference_eps: the ε of the black-box comparison.
        n: images used by the grid (the first ``n`` of the evaluation subset; None: all).
        margin: a rise of RA (or a black-box win) is flagged only when larger than ``margin``
            percentage points ...
        z: ... and significant in a paired sign test, ``b - c > z * sqrt(b + c)`` over the
            images that the two settings classify differently (noise of random attacks and
            random defenses then raises no false alarm).
        max_zero_grad_fraction: above this fraction of exactly-zero input-gradient entries, the
            gradients are reported as masked.
    """

    attack: str = "pgd"
    step_param: str = "alpha"
    steps_param: str = "steps"
    eps_grid: tuple[float, ...] = (4.0, 8.0, 16.0)
    steps_grid: tuple[int, ...] = (10, 20)
    large_eps: float = 64.0
    large_eps_max_ra: float = 5.0
    blackbox: str = "square:n_queries=1000"
    reference_eps: float = 8.0
    n: int | None = 200
    margin: float = 2.0
    z: float = 2.0
    max_zero_grad_fraction: float = 0.5

    def __post_init__(self) -> None:
        if not self.eps_grid or not self.steps_grid:
            raise ConfigError("sanity eps_grid and steps_grid must not be empty")
        if self.n is not None and self.n < 1:
            raise ConfigError(f"sanity n must be >= 1 or None, got {self.n}")
        object.__setattr__(self, "eps_grid", tuple(float(e) for e in self.eps_grid))
        object.__setattr__(self, "steps_grid", tuple(int(s) for s in self.steps_grid))

    def grid_spec(self, eps: float, steps: int) -> AttackSpec:
        name, params = parse_spec(self.attack)
        params.pop("eps", None)
        params[self.steps_param] = steps
        params[self.step_param] = round(2.5 * eps / steps, 6)
        return AttackSpec(name, eps, params)

    def blackbox_spec(self) -> AttackSpec:
        return AttackSpec.parse(self.blackbox, default_eps=self.reference_eps)


@dataclass
class EvaluationConfig:
    """Every setting of an evaluation run except the defenses, classifier, data and attacks.

    Attributes:
        threat: ``oblivious`` | ``bpda`` | ``bpda-eot`` | ``adaptive``.
        n: evaluate the first ``n`` images of the data set (None: all of it).
        seed: base seed; attack and evaluation seeds are derived from it per batch, so a resumed
            run gives the same figures as an uninterrupted one.
        batch_size: images per attack / evaluation batch (part of the cache key).
        eot_samples: draws per gradient for random defenses under ``bpda-eot`` and ``adaptive``.
        draws: independent forward passes of a random defense per image; SA and RA are averaged
            over them, each with fresh randomness that the attack never saw.
        cost_batch_size, cost_repeats, cost_warmup: cost = median over ``cost_repeats`` timed
            batches of ``cost_batch_size`` images after ``cost_warmup`` untimed ones
            (``cost_repeats=0`` skips timing).
        device: torch device string.
        threads: torch intra-op threads for the whole run (None: leave torch's setting).
        protocol: label recorded with the figures (e.g. ``"cpu"``, see PROTOCOL.md).
        sanity: run the sanity checks (extra attack runs) as configured by ``sanity_config``.
    """

    threat: str = "oblivious"
    n: int | None = None
    seed: int = 0
    batch_size: int = 100
    eot_samples: int = 10
    draws: int = 1
    cost_batch_size: int = 100
    cost_repeats: int = 5
    cost_warmup: int = 1
    device: str = "cpu"
    threads: int | None = None
    protocol: str = "custom"
    sanity: bool = False
    sanity_config: SanityConfig = field(default_factory=SanityConfig)

    def __post_init__(self) -> None:
        self.threat = check_threat(self.threat)
        for name in ("batch_size", "eot_samples", "draws", "cost_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        for name in ("cost_repeats", "cost_warmup"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{name} must be a non-negative integer, got {value!r}")
        if self.n is not None and (not isinstance(self.n, int) or self.n < 1):
            raise ConfigError(f"n must be a positive integer or None, got {self.n!r}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ConfigError(f"threads must be a positive integer or None, got {self.threads!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ConfigError(f"seed must be an integer, got {self.seed!r}")

    @classmethod
    def cpu_protocol(cls, **overrides: Any) -> EvaluationConfig:
        """The CPU protocol (PROTOCOL.md): first 1,000 images, batch 100, 2 threads."""
        settings: dict[str, Any] = {
            "n": 1000,
            "batch_size": 100,
            "cost_batch_size": 100,
            "threads": 2,
            "device": "cpu",
            "protocol": "cpu",
        }
        settings.update(overrides)
        return cls(**settings)

    def replace(self, **changes: Any) -> EvaluationConfig:
        """A copy with some fields changed; unknown names raise :class:`ConfigError`."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ConfigError(
                f"unknown evaluation setting(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}"
            )
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
