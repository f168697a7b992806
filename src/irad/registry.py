"""Build things by name: one registry per kind (classifier, defense, attack, preset).

The CLI, the Python API and saved checkpoints share this path: a config names a class and
gives its keyword arguments, and ``build`` makes it.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from irad.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> factory table with helpful errors for unknown names.

    Example:
        >>> ATTACKS = Registry("attack")
        >>> @ATTACKS.register("fgsm")
        ... class FGSM: ...
        >>> ATTACKS.get("FGSM") is FGSM
        True
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._table: dict[str, Callable[..., T]] = {}

    @staticmethod
    def _key(name: str) -> str:
        return name.strip().lower().replace("_", "-")

    def register(self, name: str, *aliases: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            for n in (name, *aliases):
                key = self._key(n)
                if key in self._table and self._table[key] is not factory:
                    raise ConfigError(f"{self.kind} name {n!r} is registered twice")
                self._table[key] = factory
            return factory

        return decorator

    def get(self, name: str) -> Callable[..., T]:
        key = self._key(name)
        if key not in self._table:
            close = difflib.get_close_matches(key, self._table, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(
                f"unknown {self.kind} {name!r}{hint} Known: {', '.join(self.names())}"
            )
        return self._table[key]

    def build(self, name: str, **kwargs: Any) -> T:
        factory = self.get(name)
        # Bind first so a wrong keyword is reported as a config error, while a TypeError raised
        # inside the constructor (a bug) still surfaces as itself.
        try:
            inspect.signature(factory).bind(**kwargs)
        except TypeError as err:
            raise ConfigError(f"bad arguments for {self.kind} {name!r}: {err}") from err
        return factory(**kwargs)

    def names(self) -> list[str]:
        return sorted(self._table)

    def __contains__(self, name: str) -> bool:
        return self._key(name) in self._table
