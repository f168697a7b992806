"""Where the harness gets its attacks: :class:`AttackBackend` (``irad.attacks`` unless replaced).

Threat models are not part of the backend: they come from :data:`irad.attacks.THREATS` by name
(register a new one with :func:`irad.attacks.threat.register_threat`).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from irad.errors import ConfigError
from irad.evaluate.specs import AttackSpec


@dataclass(frozen=True)
class AttackBackend:
    """The attack factory of an evaluation (``irad.attacks`` unless replaced).

    Pass your own to evaluate a custom attack with the same bookkeeping::

        backend = AttackBackend.default().replace(build_attack=my_factory)

    Attributes:
        build_attack: ``build_attack(name, surface, eps=..., **params)`` -> ``attack(x, y)``.
        gradient_stats: input-gradient statistics of a surface (None: not reported).
        check_spec: raises :class:`ConfigError` for an attack spec that cannot be built (checked
            up front, so a typo fails before hours of work rather than after).
    """

    build_attack: Callable[..., Any]
    gradient_stats: Callable[[nn.Module, Any, Any], Mapping[str, Any]] | None = None
    check_spec: Callable[[AttackSpec], None] | None = None

    @classmethod
    def default(cls) -> AttackBackend:
        from irad import attacks

        def check_spec(spec: AttackSpec) -> None:
            factory = attacks.ATTACKS.get(spec.name)
            try:
                inspect.signature(factory).bind(None, eps=spec.eps, **spec.params)
            except TypeError as err:
                accepted = ", ".join(attacks.attack_parameters(spec.name))
                raise ConfigError(
                    f"bad parameters for attack {spec.label!r}: {err}; accepted: {accepted}"
                ) from err

        return cls(
            build_attack=attacks.build_attack,
            gradient_stats=attacks.gradient_stats,
            check_spec=check_spec,
        )

    def replace(self, **changes: Any) -> AttackBackend:
        return dataclasses.replace(self, **changes)
