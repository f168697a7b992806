"""The settings of an evaluation run (:class:`EvaluationConfig`), its sanity checks
(:class:`SanityConfig`) and the named protocols that fix them (:class:`Protocol`: ``cpu``,
``paper``; see PROTOCOL.md).

A protocol fixes the data and batching settings; anything set explicitly overrides it, and the
run's record then says so (``cpu protocol, overridden: n=200``)::

    >>> config = get_protocol("cpu").config("oblivious", n=200)
    >>> config.n, config.threads, config.protocol_description
    (200, 2, 'cpu protocol, overridden: n=200')
    >>> get_protocol("cpu").config("adaptive").n   # full adaptive attacks: the first 200 images
    200
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from irad.attacks.threat import ThreatModel, threat_model
from irad.checks import check_int, check_positive_int, check_seed
from irad.errors import ConfigError
from irad.evaluate.specs import AttackSpec, parse_spec
from irad.registry import Registry


def check_threat(threat: str | ThreatModel) -> str:
    """Return the threat's canonical name, or raise :class:`ConfigError` listing the known ones."""
    return threat_model(threat).name


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
        threat: a threat model's name (:data:`irad.attacks.THREAT_MODELS`: ``oblivious``,
            ``bpda``, ``bpda-eot``, ``adaptive``); :attr:`threat_model` is the object.
        n: evaluate the first ``n`` images of the data set (None: all of it).
        seed: base seed; attack and scoring seeds are derived from it per batch of images
            (the derivation is recorded with the results), so a resumed run gives the same
            figures as an uninterrupted one.
        batch_size: images per attack / evaluation batch (part of the cache key).
        eot_samples: draws per gradient for random defenses under threats that use EOT.
        draws: independent forward passes of a random defense per image; SA and RA are averaged
            over them, each with fresh randomness that the attack never saw.
        cost_batch_size, cost_repeats, cost_warmup: cost = median over ``cost_repeats`` timed
            batches of ``cost_batch_size`` images after ``cost_warmup`` untimed ones
            (``cost_repeats=0`` skips timing).
        device: torch device string.
        threads: torch intra-op threads for the whole run (None: leave torch's setting).
        protocol: the protocol the settings come from (``"cpu"``, ``"paper"``, see
            :func:`get_protocol`), or a free label such as ``"custom"``.
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
            setattr(self, name, check_positive_int(getattr(self, name), name))
        for name in ("cost_repeats", "cost_warmup"):
            setattr(self, name, check_int(getattr(self, name), name, 0))
        if self.n is not None:
            self.n = check_positive_int(self.n, "n")
        if self.threads is not None:
            self.threads = check_positive_int(self.threads, "threads")
        self.seed = check_seed(self.seed)
        if not isinstance(self.protocol, str) or not self.protocol.strip():
            raise ConfigError(f"protocol must be a non-empty name, got {self.protocol!r}")

    @property
    def threat_model(self) -> ThreatModel:
        """The threat model object (what the harness asks)."""
        return threat_model(self.threat)

    @property
    def protocol_description(self) -> str:
        """``cpu protocol``, ``cpu protocol, overridden: n=200, threads=1``, or ``custom
        settings``: what a report says about where the settings came from."""
        return describe_protocol(self)

    @classmethod
    def cpu_protocol(cls, threat: str = "oblivious", **overrides: Any) -> EvaluationConfig:
        """The CPU protocol (PROTOCOL.md), ``get_protocol("cpu").config(threat, **overrides)``."""
        return PROTOCOLS.build("cpu").config(threat, **overrides)

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

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvaluationConfig:
        """Inverse of :meth:`to_dict` (unknown keys raise :class:`ConfigError`)."""
        cfg = dict(data)
        sanity = cfg.pop("sanity_config", None)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(cfg) - known)
        if unknown:
            raise ConfigError(f"unknown evaluation setting(s) {', '.join(unknown)}")
        return cls(**cfg, sanity_config=SanityConfig(**sanity) if sanity else SanityConfig())


# -- protocols ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Protocol:
    """A named set of evaluation settings (PROTOCOL.md), so every table says how it was made.

    Attributes:
        name: the registry name (``cpu``, ``paper``).
        description: one line for ``--help`` and reports.
        n: images evaluated: the first ``n`` of the data set (None: all).
        n_full_adaptive: images under a threat that differentiates through the defense
            (``adaptive``), which costs far more per image (None: as ``n``).
        batch_size, cost_batch_size: images per attack batch and per timed batch.
        threads: torch CPU threads (None: not fixed).
        device: torch device (None: not fixed).

    Example:
        >>> get_protocol("cpu").settings("adaptive")["n"]
        200
    """

    name: str
    description: str
    n: int | None = None
    n_full_adaptive: int | None = None
    batch_size: int = 100
    cost_batch_size: int = 100
    threads: int | None = None
    device: str | None = None

    def settings(self, threat: str | ThreatModel = "oblivious") -> dict[str, Any]:
        """The settings this protocol fixes for ``threat``."""
        n = self.n
        if threat_model(threat).real_gradients and self.n_full_adaptive is not None:
            n = self.n_full_adaptive
        out: dict[str, Any] = {
            "n": n,
            "batch_size": self.batch_size,
            "cost_batch_size": self.cost_batch_size,
            "threads": self.threads,
        }
        if self.device is not None:
            out["device"] = self.device
        return out

    def config(self, threat: str | ThreatModel = "oblivious", **overrides: Any) -> EvaluationConfig:
        """An :class:`EvaluationConfig` with this protocol's settings for ``threat``.

        ``overrides`` set any field of :class:`EvaluationConfig` (a value of None means "not
        given", so a command line can pass its flags unfiltered); the protocol's own settings
        that they change are named by :attr:`EvaluationConfig.protocol_description`.
        """
        given = {k: v for k, v in overrides.items() if v is not None}
        settings = {**self.settings(threat), "threat": check_threat(threat), "protocol": self.name}
        settings.update(given)
        known = {f.name for f in dataclasses.fields(EvaluationConfig)}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise ConfigError(
                f"unknown evaluation setting(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}"
            )
        return EvaluationConfig(**settings)

    def overridden(self, config: EvaluationConfig) -> dict[str, Any]:
        """The settings of ``config`` that differ from this protocol's."""
        fixed = self.settings(config.threat)
        return {k: getattr(config, k) for k, v in fixed.items() if getattr(config, k) != v}


#: The protocols, by name (PROTOCOL.md); ``custom`` means no protocol.
PROTOCOLS: Registry[Protocol] = Registry("protocol")
CUSTOM = "custom"


def register_protocol(protocol: Protocol) -> Protocol:
    """Register ``protocol`` under its name."""
    PROTOCOLS.register(protocol.name)(lambda: protocol)
    return protocol


register_protocol(
    Protocol(
        name="cpu",
        description="the first 1000 test images (full adaptive attacks: 200), batch 100, "
        "2 CPU threads",
        n=1000,
        n_full_adaptive=200,
        threads=2,
        device="cpu",
    )
)
register_protocol(
    Protocol(
        name="paper",
        description="the paper's sizes: every test image, batch 100 (for a GPU)",
    )
)


def protocol_names() -> list[str]:
    """Names accepted by :func:`protocol_config` (``custom``: no protocol)."""
    return [*PROTOCOLS.names(), CUSTOM]


def get_protocol(name: str) -> Protocol:
    """The protocol named ``name``; :class:`ConfigError` lists the known ones."""
    if not isinstance(name, str) or name not in PROTOCOLS:
        raise ConfigError(
            f"unknown protocol {name!r}; choose one of: {', '.join(protocol_names())}"
        )
    return PROTOCOLS.build(name)


def protocol_config(
    name: str, threat: str | ThreatModel = "oblivious", **overrides: Any
) -> EvaluationConfig:
    """The settings of protocol ``name`` for ``threat`` with ``overrides`` (None: not given).

    ``custom`` is no protocol: :class:`EvaluationConfig`'s defaults and the overrides.

    Example:
        >>> protocol_config("custom", n=10).protocol_description
        'custom settings'
    """
    if isinstance(name, str) and name.strip().lower() == CUSTOM:
        given = {k: v for k, v in overrides.items() if v is not None}
        return EvaluationConfig(threat=check_threat(threat), protocol=CUSTOM, **given)
    return get_protocol(name).config(threat, **overrides)


def describe_protocol(config: EvaluationConfig) -> str:
    """Where the settings of ``config`` come from, for reports."""
    if config.protocol not in PROTOCOLS:
        return f"{config.protocol} settings"
    changed = PROTOCOLS.build(config.protocol).overridden(config)
    if not changed:
        return f"{config.protocol} protocol"
    listing = ", ".join(f"{k}={v}" for k, v in changed.items())
    return f"{config.protocol} protocol, overridden: {listing}"
