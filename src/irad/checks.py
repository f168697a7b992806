"""One small set of checks, called at every public entry point.

Two families, one argument order (the value first, then its name, then the constraints):

* tensors: :func:`check_images`, :func:`check_labels`, :func:`check_logits`;
* settings: :func:`check_int`, :func:`check_float`, :func:`check_positive_int`,
  :func:`check_positive`, :func:`check_bool`, :func:`check_choice`, :func:`check_seed`,
  :func:`check_batch_size` and :func:`check_count`.

Each check returns the value (normalised: an ``int``, a ``float``, a lower-case choice) so it can
be used inline, or raises an error that names the argument, what was expected and what arrived,
instead of letting a bad value surface deep inside torch. Settings typed as text (a CLI spec such
as ``jpeg:quality=75``, a config file) are accepted with ``text=True``; Python callers get exact
types checked.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable

import torch
from torch import Tensor

from irad.errors import InputError, SettingError

# Float round-off in a defense may push a value a hair outside [0, 1]; tolerate that much.
RANGE_TOLERANCE = 1e-4


def check_images(
    x: object,
    name: str = "images",
    *,
    channels: int | None = 3,
    check_range: bool = True,
) -> Tensor:
    """Check that ``x`` is a float image batch ``(B, C, H, W)`` with values in [0, 1].

    Returns ``x`` unchanged so the check can be used inline. ``channels=None`` accepts any C.
    """
    if not isinstance(x, Tensor):
        raise InputError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 4:
        hint = " (add a batch dimension with x.unsqueeze(0))" if x.ndim == 3 else ""
        raise InputError(
            f"{name} must have shape (B, C, H, W), got {tuple(x.shape)} with {x.ndim} dims{hint}"
        )
    if channels is not None and x.shape[1] != channels:
        hint = ""
        if x.shape[-1] == channels:
            hint = " (it looks like NHWC: use x.permute(0, 3, 1, 2))"
        elif x.shape[1] == 1 and channels == 3:
            hint = " (grayscale: repeat the channel with x.expand(-1, 3, -1, -1))"
        raise InputError(
            f"{name} must have {channels} channels in dim 1, got shape {tuple(x.shape)}{hint}"
        )
    if not x.is_floating_point():
        hint = " (uint8 images: convert with x.float() / 255)" if x.dtype == torch.uint8 else ""
        raise InputError(f"{name} must be a floating-point tensor, got dtype {x.dtype}{hint}")
    if x.numel() == 0:
        raise InputError(f"{name} is empty: shape {tuple(x.shape)}")
    if check_range:
        with torch.no_grad():
            lo, hi = float(x.min()), float(x.max())
        if math.isnan(lo) or math.isnan(hi):
            raise InputError(f"{name} contains NaN")
        if lo < -RANGE_TOLERANCE or hi > 1 + RANGE_TOLERANCE:
            hint = " (values look like 0..255: divide by 255)" if hi > 1.5 else ""
            raise InputError(
                f"{name} must lie in [0, 1], got values in [{lo:.4g}, {hi:.4g}]{hint}"
                " (irad classifiers normalise internally; pass unnormalised images)"
            )
    return x


def check_labels(y: object, batch: int, name: str = "labels") -> Tensor:
    """Check that ``y`` is an integer label vector of length ``batch``."""
    if not isinstance(y, Tensor):
        raise InputError(f"{name} must be a torch.Tensor, got {type(y).__name__}")
    if y.ndim != 1 or y.shape[0] != batch:
        raise InputError(f"{name} must have shape ({batch},), got {tuple(y.shape)}")
    if y.is_floating_point() or y.dtype == torch.bool:
        raise InputError(f"{name} must be an integer tensor, got dtype {y.dtype}")
    return y


def check_logits(logits: object, batch: int, num_classes: int | None = None) -> Tensor:
    """Check that a classifier returned logits of shape ``(batch, num_classes)``."""
    if not isinstance(logits, Tensor):
        raise InputError(
            f"the classifier must return a logits tensor, got {type(logits).__name__}"
            " (wrap models that return tuples or dicts so that forward returns logits)"
        )
    if logits.ndim != 2 or logits.shape[0] != batch:
        raise InputError(
            f"the classifier must return logits of shape ({batch}, num_classes), "
            f"got {tuple(logits.shape)}"
        )
    if num_classes is not None and logits.shape[1] != num_classes:
        raise InputError(
            f"the classifier returned {logits.shape[1]} logits per image, expected {num_classes}"
        )
    return logits


# ---------------------------------------------------------------------------------------------
# settings


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:g}"


def _bounds(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    """`` in [0, 1)``, `` >= 1``, `` <= 8`` or nothing."""
    if low is not None and high is not None and math.isfinite(high):
        left, right = "(" if low_open else "[", ")" if high_open else "]"
        return f" in {left}{_number(low)}, {_number(high)}{right}"
    if low is not None:
        return f" {'>' if low_open else '>='} {_number(low)}"
    if high is not None and math.isfinite(high):
        return f" {'<' if high_open else '<='} {_number(high)}"
    return ""


def _real(value: object, expected: str, text: bool) -> numbers.Real:
    """``value`` as a real number (``text``: also a string spelling one), never a bool."""
    number: object = value
    if text and isinstance(value, str):
        try:
            number = int(value.strip())
        except ValueError:
            try:
                number = float(value.strip())
            except ValueError:
                raise SettingError(f"{expected}, got {value!r}") from None
    if isinstance(number, bool) or not isinstance(number, numbers.Real):
        raise SettingError(f"{expected}, got {value!r}")
    return number


def check_int(
    value: object,
    name: str,
    low: int | None = None,
    high: int | None = None,
    *,
    text: bool = False,
) -> int:
    """Check an integer setting in ``[low, high]`` (``4.0`` is 4; ``4.5`` and ``True`` are not).

    Example:
        >>> check_int(3, "steps", 1), check_int("8", "bits", 1, 8, text=True)
        (3, 8)
    """
    expected = f"{name} must be an integer{_bounds(low, high, False, False)}"
    number = _real(value, expected, text)
    if not isinstance(number, numbers.Integral) and not (
        math.isfinite(number) and float(number).is_integer()
    ):
        raise SettingError(f"{expected}, got {value!r}")
    out = int(number)
    if (low is not None and out < low) or (high is not None and out > high):
        raise SettingError(f"{expected}, got {out}")
    return out


def check_float(
    value: object,
    name: str,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    text: bool = False,
) -> float:
    """Check a finite real setting between ``low`` and ``high`` (ends closed unless ``*_open``).

    Example:
        >>> check_float(0.5, "p", 0, 1), check_float("1.5", "gamma", 0, text=True)
        (0.5, 1.5)
    """
    expected = f"{name} must be a number{_bounds(low, high, low_open, high_open)}"
    out = float(_real(value, expected, text))
    if not math.isfinite(out):
        raise SettingError(f"{name} must be finite, got {value!r}")
    below = low is not None and (out <= low if low_open else out < low)
    above = high is not None and (out >= high if high_open else out > high)
    if below or above:
        raise SettingError(f"{expected}, got {_number(out)}")
    return out


def check_positive_int(value: object, name: str, *, text: bool = False) -> int:
    """Check an integer setting ``>= 1`` (steps, queries, samples)."""
    return check_int(value, name, 1, text=text)


def check_positive(
    value: object, name: str, high: float = math.inf, *, text: bool = False
) -> float:
    """Check a real setting in ``(0, high]``.

    Example:
        >>> check_positive(8, "eps (in /255 units)", 255)
        8.0
    """
    return check_float(value, name, 0.0, high, low_open=True, text=text)


def check_bool(value: object, name: str, *, text: bool = False) -> bool:
    """Check a ``True`` / ``False`` setting (``text``: also true/false, yes/no, 1/0, on/off)."""
    if isinstance(value, bool):
        return value
    if text:
        key = str(value).strip().lower()
        if key in _TRUE:
            return True
        if key in _FALSE:
            return False
    raise SettingError(f"{name} must be true or false, got {value!r}")


def check_choice(value: object, name: str, choices: Iterable[str]) -> str:
    """Check a name among ``choices`` (case and surrounding spaces ignored); return it lower-case.

    Example:
        >>> check_choice("DLR", "loss", ("ce", "dlr"))
        'dlr'
    """
    options = tuple(choices)
    if isinstance(value, str) and value.strip().lower() in options:
        return value.strip().lower()
    raise SettingError(f"{name} must be one of {', '.join(map(repr, options))}; got {value!r}")


def check_seed(
    value: object, name: str = "seed", *, optional: bool = False, text: bool = False
) -> int | None:
    """Check a seed: an integer in ``[0, 2**63)`` (NumPy integers included).

    With ``optional``, ``None`` (and, with ``text``, ``"none"``) means no seed and gives None.
    """
    if optional and (value is None or (text and str(value).strip().lower() == "none")):
        return None
    return check_int(value, name, 0, 2**63 - 1, text=text)


def check_batch_size(value: object, name: str = "batch_size") -> int:
    """Check a batch size (an integer >= 1)."""
    return check_int(value, name, 1)


def check_count(value: object, name: str, available: int, what: str) -> int:
    """Check a number of items to use: at least 1 and at most the ``available`` ones.

    Asking for more than there are is refused rather than clamped, so a result never silently
    covers fewer items than asked for.

    Example:
        >>> check_count(100, "--n", 1000, "images in cifar10/test")
        100
    """
    n = check_int(value, name, 1)
    if n > available:
        raise SettingError(
            f"{name} {n} is more than the {available} {what}; pass {name} {available} or less "
            "(or leave it out to use them all)"
        )
    return n
