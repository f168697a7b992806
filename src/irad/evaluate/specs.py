"""What to evaluate, as data: attack and defense specs parsed from ``name:k=v,...`` strings
(the settings of a run are in :mod:`irad.evaluate.config`).

The same strings work on the command line and in Python::

    >>> AttackSpec.parse("pgd:steps=20,alpha=2")
    AttackSpec(name='pgd', eps=8.0, params={'steps': 20, 'alpha': 2}, alias=None)
    >>> AttackSpec.parse("pgd:eps=4").label
    'pgd:eps=4'
    >>> parse_spec("jpeg:quality=75")
    ('jpeg', {'quality': 75})
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from irad.errors import ConfigError
from irad.registry import format_spec, parse_spec
from irad.registry import parse_value as parse_value  # re-exported: specs are parsed there

#: Attacks that use no gradients: they must never beat a working white-box attack.
BLACK_BOX_ATTACKS: frozenset[str] = frozenset({"square"})
#: Largest ε accepted, in /255 (64/255 is the sanity check's "everything breaks" budget).
MAX_EPS = 255.0
#: Smallest ε accepted, in /255: one grey level of an 8-bit image. A smaller value is almost
#: always a budget written as a fraction (0.03 for 8/255).
MIN_EPS = 1.0


def check_eps(value: object, name: str = "eps") -> float:
    """Check a budget in units of 1/255: a number in [1, 255].

    A value below 1 is refused with the fix, because it is almost always a fraction meant as
    x/255 (``--eps 0.03`` would otherwise run at 0.03/255, a budget that does nothing).

    Example:
        >>> check_eps(8)
        8.0
        >>> check_eps(0.03, "--eps")
        Traceback (most recent call last):
        ...
        irad.errors.ConfigError: --eps is in units of 1/255: for 0.03 ≈ 8/255 pass --eps 8
    """
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a number in units of 1/255 (e.g. 8), got {value!r}")
    eps = float(value)
    if 0 < eps < MIN_EPS:
        scaled = max(1, round(eps * 255))
        fix = f"{name} {scaled}" if name.startswith("--") else f"{name}={scaled}"
        raise ConfigError(f"{name} is in units of 1/255: for {eps:g} ≈ {scaled}/255 pass {fix}")
    if not MIN_EPS <= eps <= MAX_EPS:
        raise ConfigError(
            f"{name} must be in [{MIN_EPS:g}, {MAX_EPS:g}] (units of 1/255, e.g. 8 for 8/255), "
            f"got {eps:g}"
        )
    return eps


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
        eps = check_eps(self.eps)
        if "eps" in self.params:
            raise ConfigError("give eps as AttackSpec(eps=...), not inside params")
        object.__setattr__(self, "eps", eps)
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
