"""Validation of defense settings, shared by the defense modules.

Settings may arrive from the CLI as strings (``--defense jpeg:quality=75``), so numbers are
accepted in any form that means the number, and anything else raises an
:class:`~irad.errors.InputError` that names the setting, the allowed range and what arrived.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from irad.errors import InputError


def as_int(value: object, name: str, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an int in ``[low, high]`` (``"4"`` and ``4.0`` are fine, ``4.5`` is not)."""
    try:
        number = float(value) if isinstance(value, str) else value
        if isinstance(number, bool) or not float(number).is_integer():  # type: ignore[arg-type]
            raise ValueError
        out = int(number)  # type: ignore[call-overload]
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"{name} must be an integer{_range(low, high)}, got {value!r}") from None
    if (low is not None and out < low) or (high is not None and out > high):
        raise InputError(f"{name} must be an integer{_range(low, high)}, got {out}")
    return out


def as_float(
    value: object, name: str, low: float | None = None, high: float | None = None
) -> float:
    """``value`` as a finite float in ``[low, high]``."""
    try:
        if isinstance(value, bool):
            raise ValueError
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number{_range(low, high)}, got {value!r}") from None
    if not math.isfinite(out):
        raise InputError(f"{name} must be finite, got {value!r}")
    if (low is not None and out < low) or (high is not None and out > high):
        raise InputError(f"{name} must be a number{_range(low, high)}, got {out}")
    return out


def as_choice(value: object, name: str, choices: Iterable[str]) -> str:
    """``value`` as one of ``choices`` (case-insensitive)."""
    options = tuple(choices)
    key = str(value).strip().lower()
    if key not in options:
        raise InputError(f"{name} must be one of {', '.join(options)}, got {value!r}")
    return key


def as_bool(value: object, name: str) -> bool:
    """``value`` as a bool (``"true"``/``"false"``/``1``/``0`` from the CLI are fine)."""
    if isinstance(value, bool):
        return value
    key = str(value).strip().lower()
    if key in ("1", "true", "yes", "on"):
        return True
    if key in ("0", "false", "no", "off"):
        return False
    raise InputError(f"{name} must be true or false, got {value!r}")


def _range(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f" in [{low}, {high}]"
    if low is not None:
        return f" >= {low}"
    if high is not None:
        return f" <= {high}"
    return ""
