"""Median filter (the "Median Filter" row of Table 2), registered as ``median``."""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor

from irad.checks import check_choice, check_images, check_int
from irad.defenses.base import Defense
from irad.errors import InputError

#: Border rules: torch's ``reflect`` (d c b | a b c d), ``replicate`` (a a a | a b c d; equal to
#: scipy.ndimage's default ``reflect`` for a 3 x 3 window) and ``zeros`` (kornia's median_blur).
MEDIAN_PADDINGS: tuple[str, ...] = ("reflect", "replicate", "zeros")


def median_filter(x: Tensor, kernel_size: int = 3, padding: str = "reflect") -> Tensor:
    """Per-channel ``k x k`` median filter, vectorised with ``unfold``.

    ``k * k`` is odd, so the median is the middle value, one of the inputs; the gradient flows to
    that input pixel only.

    Args:
        x: images.
        kernel_size: odd window size ``k`` (3 by default).
        padding: ``"reflect"`` (default), ``"replicate"`` or ``"zeros"``.

    Shape:
        - x: ``(B, C, H, W)``; Output: ``(B, C, H, W)``.

    Example:
        >>> import torch
        >>> x = torch.tensor([[[[1.0, 9.0, 2.0], [8.0, 3.0, 7.0], [4.0, 6.0, 5.0]]]])
        >>> median_filter(x)[0, 0, 1, 1]
        tensor(5.)
    """
    check_images(x, "images", channels=None, check_range=False)
    k = check_int(kernel_size, "kernel_size", 1, text=True)
    if k % 2 == 0:
        raise InputError(
            f"kernel_size must be odd (the window needs a centre pixel), got {k}; try {k + 1}"
        )
    padding = check_choice(padding, "padding", MEDIAN_PADDINGS)
    r = k // 2
    h, w = x.shape[-2:]
    if padding == "reflect" and (r >= h or r >= w):
        raise InputError(
            f"a {k}x{k} median with reflect padding needs images larger than {r} pixels per "
            f"side, got {h}x{w}; use padding='replicate' or a smaller kernel_size"
        )
    if r == 0:
        return x
    mode = "constant" if padding == "zeros" else padding
    padded = F.pad(x, (r, r, r, r), mode=mode)
    windows = padded.unfold(2, k, 1).unfold(3, k, 1)  # (B, C, H, W, k, k)
    return windows.reshape(*x.shape, k * k).median(dim=-1).values


class MedianFilter(Defense):
    """Median filter over ``kernel_size x kernel_size`` windows, per colour channel.

    Args:
        kernel_size: odd window size (default 3); an even size raises :class:`InputError`.
        padding: border rule, ``"reflect"`` (default), ``"replicate"`` or ``"zeros"``.

    Differentiable: each output pixel is one of the input pixels, and the gradient flows to it.

    Shape:
        - Input: ``(B, 3, H, W)`` in [0, 1].
        - Output: ``(B, 3, H, W)`` in [0, 1].

    Example:
        >>> import torch
        >>> MedianFilter(3)(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 3, 32, 32])
    """

    differentiable = True

    def __init__(self, kernel_size: int = 3, padding: str = "reflect") -> None:
        super().__init__()
        self.kernel_size = check_int(kernel_size, "kernel_size", 1, text=True)
        if self.kernel_size % 2 == 0:
            raise InputError(
                f"kernel_size must be odd (the window needs a centre pixel), got "
                f"{self.kernel_size}; try {self.kernel_size + 1}"
            )
        self.padding = check_choice(padding, "padding", MEDIAN_PADDINGS)

    def purify(self, x: Tensor) -> Tensor:
        return median_filter(x, self.kernel_size, self.padding)

    def config(self) -> dict[str, Any]:
        return {"name": "median", "kernel_size": self.kernel_size, "padding": self.padding}
