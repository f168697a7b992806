"""Build things by name: one registry per kind (classifier, defense, attack, preset, sampler).

The CLI, the Python API and saved checkpoints share this path: a config names a class and
gives its keyword arguments, and ``build`` makes it. Other spellings of a name are registered
as aliases of it (``register("si", "spatially-invariant")``), never kept in a separate map.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from irad.errors import SettingError

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
