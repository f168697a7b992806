"""Image resampling (Eq. 4): ``I_hat[i, j] = phi(U[i, j])`` with ``U = G + SAMPLER``."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from irad.checks import check_choice, check_images
from irad.errors import InputError
from irad.resample.coordinates import make_grid
from irad.resample.reconstruction import PADDING_MODES, canonical_reconstruction, reconstruct
from irad.resample.samplers import Sampler, SpatiallyInvariantSampler


def resample(
    image: Tensor,
    shifts: Tensor,
    reconstruction: str = "bilinear",
    *,
    padding_mode: str = "border",
) -> Tensor:
    """Eq. (4): query ``image`` at ``U = G + shifts`` with the named reconstruction.

    Args:
        image: images to resample.
        shifts: per-pixel shifts in pixel units, (row, col); one set per image or one for all.
        reconstruction: ``"bilinear"`` or ``"nearest"`` (aliases ``"bil"``, ``"nea"``).
        padding_mode: border rule, see :mod:`irad.resample.reconstruction`.

    Shape:
        - image: ``(B, C, H, W)``.
        - shifts: ``(B, H, W, 2)``, ``(1, H, W, 2)`` or ``(H, W, 2)``.
        - Output: ``(B, C, H, W)``.

    Example:
        >>> img = torch.rand(2, 3, 5, 7)
        >>> torch.equal(resample(img, torch.zeros(5, 7, 2)), img)
        True
    """
    check_images(image, "image", channels=None, check_range=False)
    h, w = image.shape[-2:]
    if not isinstance(shifts, Tensor) or shifts.shape[-3:] != (h, w, 2):
        got = tuple(shifts.shape) if isinstance(shifts, Tensor) else type(shifts).__name__
        raise InputError(f"shifts must have shape (B, {h}, {w}, 2) to match the image, got {got}")
    grid = make_grid(h, w, dtype=shifts.dtype, device=shifts.device)
    return reconstruct(image, grid + shifts, reconstruction, padding_mode=padding_mode)


class Resampler(nn.Module):
    """Image resampling ``phi(G + SAMPLER)`` as a module (Eq. 4).

    Args:
        reconstruction: ``"bilinear"`` (Eq. 5) or ``"nearest"`` (Eq. 6); aliases ``bil``, ``nea``.
        sampler: a :class:`~irad.resample.samplers.Sampler`; default: no shift
            (``SpatiallyInvariantSampler(0)``, the identity).
        padding_mode: border rule for coordinates that leave the image (default ``"border"``:
            replicate the border pixels).

    Differentiable in the input for both reconstructions (nearest passes the gradient to the
    pixel it selects). ``stochastic`` is the sampler's.

    Shape:
        - Input: ``(B, C, H, W)``, any H and W.
        - Output: ``(B, C, H, W)``.

    Example:
        >>> from irad.resample import SpatiallyVariantSampler
        >>> r = Resampler("bilinear", SpatiallyVariantSampler(1.5, seed=0))
        >>> r(torch.rand(2, 3, 32, 32)).shape, r.stochastic
        (torch.Size([2, 3, 32, 32]), True)
    """

    def __init__(
        self,
        reconstruction: str = "bilinear",
        sampler: Sampler | None = None,
        *,
        padding_mode: str = "border",
    ) -> None:
        super().__init__()
        self.reconstruction = canonical_reconstruction(reconstruction)
        self.padding_mode = check_choice(padding_mode, "padding_mode", PADDING_MODES)
        if sampler is None:
            sampler = SpatiallyInvariantSampler(0.0)
        if not isinstance(sampler, Sampler):
            raise InputError(
                f"sampler must be an irad.resample Sampler, got {type(sampler).__name__}"
            )
        self.sampler = sampler

    @property
    def stochastic(self) -> bool:
        return bool(self.sampler.stochastic)

    def forward(self, image: Tensor) -> Tensor:
        check_images(image, "image", channels=None, check_range=False)
        b, _, h, w = image.shape
        # Shifts in the image's dtype unless it is half precision: pixel coordinates need the bits.
        dtype = image.dtype if image.dtype in (torch.float32, torch.float64) else torch.float32
        shifts = self.sampler(b, h, w, dtype=dtype, device=image.device)
        return resample(image, shifts, self.reconstruction, padding_mode=self.padding_mode)

    def config(self) -> dict[str, Any]:
        return {
            "reconstruction": self.reconstruction,
            "sampler": self.sampler.config(),
            "padding_mode": self.padding_mode,
        }

    def extra_repr(self) -> str:
        return f"reconstruction={self.reconstruction}, padding_mode={self.padding_mode}"
