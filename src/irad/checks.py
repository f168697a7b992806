"""One small set of input checks, called at every public entry point.

Each check raises :class:`irad.errors.InputError` with a message that names the argument, what
was expected and what arrived, instead of letting a shape error surface deep inside torch.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from irad.errors import InputError

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


def check_range(value: float, low: float, high: float, name: str) -> float:
    """Check ``low <= value <= high`` for a scalar setting."""
    if not (low <= value <= high):
        raise InputError(f"{name} must be in [{low}, {high}], got {value}")
    return value
