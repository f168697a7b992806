"""Build things by name: one registry per kind (classifier, defense, attack, preset, sampler).

The CLI, the Python API and saved checkpoints share this path: a config names a class and
gives its keyword arguments, and ``build`` makes it. Other spellings of a name are registered
as aliases of it (``register("si", "spatially-invariant")``), never kept in a separate map.
"""

from __future__ import annotations

import difflib
import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from irad.errors import ConfigError, SettingError

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> factory table with aliases and helpful errors for unknown names.

    Names are matched case-insensitively, with ``_`` and ``-`` alike. An unknown name raises
    :class:`~irad.errors.SettingError` (a ``ConfigError`` and an ``InputError``) that suggests
    close names and lists the known ones.

    Example:
        >>> ATTACKS = Registry("attack")
        >>> @ATTACKS.register("fgsm", "fast-gradient-sign")
        ... class FGSM: ...
        >>> ATTACKS.get("FGSM") is FGSM, ATTACKS.canonical("fast_gradient_sign")
        (True, 'fgsm')
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._table: dict[str, Callable[..., T]] = {}
        self._primary: dict[str, str] = {}  # every key -> the name it was registered under

    @staticmethod
    def _key(name: str) -> str:
        return str(name).strip().lower().replace("_", "-")

    def register(self, name: str, *aliases: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator: register a factory under ``name`` and its ``aliases``."""

        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            primary = self._key(name)
            for n in (name, *aliases):
                key = self._key(n)
                if key in self._table and self._table[key] is not factory:
                    raise SettingError(f"{self.kind} name {n!r} is registered twice")
                self._table[key] = factory
                self._primary[key] = primary
            return factory

        return decorator

    def get(self, name: str, *, otherwise: str = "") -> Callable[..., T]:
        """The factory registered as ``name``; ``otherwise`` ends the error for unknown names
        (what else the caller accepts, e.g. "or pass the path of a file")."""
        key = self._key(name)
        if key not in self._table:
            close = difflib.get_close_matches(key, self._table, n=3)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            raise SettingError(
                f"unknown {self.kind} {name!r}{hint} Known: {self.describe()}"
                + (f"; {otherwise}" if otherwise else "")
            )
        return self._table[key]

    def canonical(self, name: str) -> str:
        """The name an entry was registered under, for any of its spellings and aliases."""
        self.get(name)
        return self._primary[self._key(name)]

    def build(self, name: str, **kwargs: Any) -> T:
        factory = self.get(name)
        # Bind first so a wrong keyword is reported as a config error, while a TypeError raised
        # inside the constructor (a bug) still surfaces as itself.
        try:
            inspect.signature(factory).bind(**kwargs)
        except TypeError as err:
            raise SettingError(f"bad arguments for {self.kind} {name!r}: {err}") from err
        return factory(**kwargs)

    def names(self, *, aliases: bool = True) -> list[str]:
        """Registered names, sorted; ``aliases=False`` gives the primary names only."""
        return sorted(self._table if aliases else set(self._primary.values()))

    def describe(self) -> str:
        """The primary names with their aliases, e.g. ``si (invariant), sv (variant)``."""
        parts = []
        for primary in self.names(aliases=False):
            others = sorted(k for k, p in self._primary.items() if p == primary and k != primary)
            parts.append(f"{primary} ({', '.join(others)})" if others else primary)
        return ", ".join(parts)

    def __contains__(self, name: str) -> bool:
        return self._key(name) in self._table


# -- specs: "name:key=value,key=value" strings that name a registry entry and its arguments --


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
