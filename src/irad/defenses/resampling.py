"""Naive image resampling (Sec. 3.2, Table 1) as a defense: ``IR(reconstruction, SAMPLER)``.

Registered as ``ir`` (all settings) and, for the four rows of Table 1, ``ir-bil-si``,
``ir-bil-sv``, ``ir-nea-si`` and ``ir-nea-sv`` (shift 1.5 pixels by default).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from irad.checks import check_choice, check_float, check_seed
from irad.defenses.base import Defense
from irad.resample import (
    PADDING_MODES,
    Resampler,
    build_sampler,
    canonical_reconstruction,
    canonical_sampler,
)


class ImageResampling(Defense):
    """``IR(reconstruction, SAMPLER(shift))``: resample the input at shifted pixel centres.

    ``out = phi(G + SAMPLER)`` (Eq. 4) with bilinear (Eq. 5) or nearest (Eq. 6) reconstruction and
    a spatially invariant shift ``[d, d]`` (Eq. 7) or per-pixel shifts ``U(0, gamma)`` (Eq. 8),
    in pixels. See :mod:`irad.resample` for the conventions.

    Args:
        reconstruction: ``"bilinear"`` or ``"nearest"`` (aliases ``bil``, ``nea``).
        sampler: ``"si"`` (spatially invariant) or ``"sv"`` (spatially variant).
        shift: ``d`` for ``si`` (any finite real), ``gamma >= 0`` for ``sv``; in pixels.
        padding_mode: border rule, ``"border"`` (default, replicate), ``"zeros"``, ``"reflection"``.
        seed: seed of the ``sv`` sampler's own generator (``None``: global torch RNG).

    ``stochastic`` is true for ``sv`` with ``shift > 0``. ``differentiable`` is true for both
    reconstructions: bilinear is smooth in the pixels; nearest selects pixels, so its gradient
    with respect to the input is exact (a 0/1 selection), although it is piecewise constant in
    the coordinates.

    Shape:
        - Input: ``(B, 3, H, W)`` in [0, 1], any H and W.
        - Output: ``(B, 3, H, W)`` in [0, 1].

    Example:
        >>> import torch
        >>> defense = ImageResampling("bilinear", "si", 1.5)
        >>> defense(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 3, 32, 32])
    """

    differentiable = True

    def __init__(
        self,
        reconstruction: str = "bilinear",
        sampler: str = "si",
        shift: float = 1.5,
        padding_mode: str = "border",
        seed: int | None = None,
    ) -> None:
        super().__init__()
        self.reconstruction = canonical_reconstruction(reconstruction)
        self.sampler_name = canonical_sampler(sampler)
        low = 0.0 if self.sampler_name == "sv" else None
        self.shift = check_float(shift, f"shift ({'gamma' if low == 0.0 else 'd'})", low, text=True)
        self.padding_mode = check_choice(padding_mode, "padding_mode", PADDING_MODES)
        self.seed = check_seed(seed, optional=True, text=True)
        self.resampler = Resampler(
            self.reconstruction,
            build_sampler(self.sampler_name, self.shift, seed=self.seed),
            padding_mode=self.padding_mode,
        )
        self.stochastic = self.resampler.stochastic

    def purify(self, x: Tensor) -> Tensor:
        return self.resampler(x)

    def config(self) -> dict[str, Any]:
        return {
            "name": "ir",
            "reconstruction": self.reconstruction,
            "sampler": self.sampler_name,
            "shift": self.shift,
            "padding_mode": self.padding_mode,
            "seed": self.seed,
        }


def _table1_row(reconstruction: str, sampler: str, doc: str) -> Any:
    def factory(
        shift: float = 1.5, padding_mode: str = "border", seed: int | None = None
    ) -> ImageResampling:
        return ImageResampling(reconstruction, sampler, shift, padding_mode, seed)

    factory.__name__ = f"ir_{reconstruction[:3]}_{sampler}"
    factory.__doc__ = f"{doc} (Table 1); ``shift`` in pixels, default 1.5."
    return factory


ir_bil_si = _table1_row("bilinear", "si", "IR(bil, SAMPLER(d))")
ir_bil_sv = _table1_row("bilinear", "sv", "IR(bil, SAMPLER(gamma))")
ir_nea_si = _table1_row("nearest", "si", "IR(nea, SAMPLER(d))")
ir_nea_sv = _table1_row("nearest", "sv", "IR(nea, SAMPLER(gamma))")
