"""Bit-depth reduction (Xu et al. 2017, "Feature squeezing"), registered as ``bit-depth``."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from irad.checks import check_bool, check_int
from irad.defenses.base import Defense


def reduce_bit_depth(x: Tensor, bits: int) -> Tensor:
    """Quantise ``x`` in [0, 1] to ``2**bits`` levels: ``round(x * (2**bits - 1)) / (2**bits - 1)``.

    Ties round half to even (``torch.round``, as ``np.rint`` in Xu et al.'s code): at 4 bits,
    0.5 -> 7.5 -> 8 -> 8/15.

    Shape:
        - x: ``(*)``; Output: same shape.

    Example:
        >>> reduce_bit_depth(torch.tensor([0.0, 0.5, 1.0]), 1)
        tensor([0., 0., 1.])
    """
    levels = 2**bits - 1
    return torch.round(x * levels) / levels


class BitDepthReduction(Defense):
    """Quantise each colour channel to ``bits`` bits (Xu et al. 2017; 4 bits for CIFAR here).

    Args:
        bits: bits per channel, 1 to 8 (default 4). 8 bits is the uint8 grid itself.
        straight_through: forward quantises, backward is the identity (the straight-through
            estimator); the adaptive-attack surrogate. Default ``False``: the true gradient,
            which is zero almost everywhere.

    ``differentiable`` is ``False`` unless ``straight_through``; :meth:`differentiable_surrogate`
    returns the straight-through version.

    Shape:
        - Input: ``(B, 3, H, W)`` in [0, 1].
        - Output: ``(B, 3, H, W)``, values in ``{k / (2**bits - 1)}``.

    Example:
        >>> BitDepthReduction(bits=4)(torch.full((1, 3, 2, 2), 0.5))[0, 0, 0, 0]
        tensor(0.5333)
    """

    def __init__(self, bits: int = 4, straight_through: bool = False) -> None:
        super().__init__()
        self.bits = check_int(bits, "bits", 1, 8, text=True)
        self.straight_through = check_bool(straight_through, "straight_through", text=True)
        self.differentiable = self.straight_through

    def purify(self, x: Tensor) -> Tensor:
        quantised = reduce_bit_depth(x, self.bits)
        if self.straight_through:
            return x + (quantised - x).detach()
        return quantised

    def differentiable_surrogate(self) -> Defense:
        return BitDepthReduction(self.bits, straight_through=True)

    def config(self) -> dict[str, Any]:
        return {"name": "bit-depth", "bits": self.bits, "straight_through": self.straight_through}
