"""Attacks by name: ``ATTACKS`` and :func:`build_attack`.

The CLI, the evaluation harness and saved result configs all build attacks through
:func:`build_attack`, so a config such as ``{"name": "pgd", "eps": 8, "steps": 20}`` is enough to
rebuild an attack.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from irad.attacks.base import Attack
from irad.errors import ConfigError
from irad.registry import Registry

__all__ = ["ATTACKS", "attack_names", "attack_parameters", "build_attack", "register_attack"]

#: Every attack irad knows, by name.
ATTACKS: Registry[Attack] = Registry("attack")

A = TypeVar("A", bound=type[Attack])

# Arguments every attack takes that are not attack-specific parameters.
_COMMON = ("model", "eps")


def register_attack(name: str) -> Callable[[A], A]:
    """Class decorator: register an :class:`Attack` subclass under ``name``."""

    def decorator(cls: A) -> A:
        cls.name = name
        ATTACKS.register(name)(cls)
        return cls

    return decorator


def attack_parameters(name: str) -> dict[str, Any]:
    """The parameters an attack accepts besides ``model`` and ``eps``, with their defaults.

    Example:
        >>> attack_parameters("pgd")["steps"]
        20
    """
    sig = inspect.signature(ATTACKS.get(name))
    return {
        p.name: (None if p.default is inspect.Parameter.empty else p.default)
        for p in sig.parameters.values()
        if p.name not in _COMMON
    }


def attack_names() -> list[str]:
    """Names of all registered attacks, sorted."""
    return ATTACKS.names()


def build_attack(name: str, model: nn.Module, eps: float = 8, **params: Any) -> Attack:
    """Build a registered attack by name.

    Args:
        name: an attack name (``irad.attacks.attack_names()``), case-insensitive.
        model: the module to attack, images in [0, 1] -> logits (see ``attack_surface``).
        eps: L∞ budget in /255 units.
        **params: the attack's parameters (step sizes such as ``alpha`` in /255 units too);
            ``seed`` for attacks that draw random numbers.

    Raises:
        ConfigError: unknown attack name (the message lists the known ones) or unknown parameter
            (the message lists the accepted ones).
        InputError: a parameter with a bad value (e.g. ``eps`` outside (0, 255], ``steps < 1``).

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 10))
        >>> build_attack("pgd", net, eps=8, steps=10, alpha=1, random_start=False).config()["alpha"]
        1.0
    """
    factory = ATTACKS.get(name)
    key = getattr(factory, "name", name)
    accepted = attack_parameters(name)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        listing = ", ".join(f"{k}={v!r}" for k, v in accepted.items())
        raise ConfigError(
            f"unknown parameter(s) {', '.join(unknown)} for attack {key!r}; it accepts: {listing}"
        )
    return factory(model, eps=eps, **params)
