"""JPEG compression (Dziugaite et al. 2016; Guo et al. 2018), registered as ``jpeg``.

Two implementations:

* :class:`JPEG` (``jpeg``): the real codec, a PIL (libjpeg) encode/decode round trip per image,
  quality ``q``, 4:2:0 chroma subsampling, the standard quantisation tables. This is the defense
  that is deployed and evaluated. Its forward goes through 8-bit integers, so its true gradient is
  zero almost everywhere.
* :class:`DifferentiableJPEG` (``jpeg-diff``): kornia's differentiable JPEG
  (``kornia.enhance.jpeg_codec_differentiable``, Reich et al. 2024): the same pipeline (YCbCr,
  4:2:0, 8x8 DCT, the same quality-scaled tables) with smooth rounding, for adaptive attacks.
  Any H x W works (kornia pads to a multiple of 16 and crops back).

The two do not give identical images: kornia approximates rounding and does not quantise the
decoded pixels to 8 bits, and its chroma down/up-sampling filters differ from libjpeg's. See
``docs/defenses.md`` for the measured difference on CIFAR-10.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from irad.checks import check_int
from irad.defenses.base import Defense


def jpeg_roundtrip(x: Tensor, quality: int) -> Tensor:
    """Encode and decode each image with PIL's JPEG codec (libjpeg) at ``quality``.

    The image is first rounded to uint8 (JPEG stores 8-bit samples). Runs on the CPU, one image
    at a time; the result is returned on ``x``'s device and dtype, with no gradient.

    Shape:
        - x: ``(B, 3, H, W)`` in [0, 1]; Output: same shape, multiples of 1/255.

    Example:
        >>> x = torch.rand(2, 3, 16, 16)
        >>> jpeg_roundtrip(x, 75).shape
        torch.Size([2, 3, 16, 16])
    """
    pixels = (x.detach().clamp(0, 1) * 255).round().to(torch.uint8)
    pixels = pixels.permute(0, 2, 3, 1).cpu().numpy()
    decoded = np.empty_like(pixels)
    for i, image in enumerate(pixels):
        buffer = io.BytesIO()
        Image.fromarray(image).save(
            buffer, format="JPEG", quality=int(quality), subsampling="4:2:0"
        )
        buffer.seek(0)
        with Image.open(buffer) as decoded_image:
            decoded[i] = np.asarray(decoded_image.convert("RGB"))
    out = torch.from_numpy(decoded).permute(0, 3, 1, 2)
    return out.to(device=x.device, dtype=x.dtype) / 255


class JPEG(Defense):
    """JPEG compression with PIL / libjpeg at ``quality`` (default 75).

    Args:
        quality: JPEG quality, 1 to 100 (default 75).

    ``differentiable`` is ``False``: the output is connected to the input with a zero gradient
    (the true derivative of a piecewise-constant map), so an attack with real gradients sees
    zeros rather than an error. Use BPDA or :meth:`differentiable_surrogate` (kornia's
    differentiable JPEG at the same quality) for adaptive attacks.

    Shape:
        - Input: ``(B, 3, H, W)`` in [0, 1], any H and W.
        - Output: ``(B, 3, H, W)`` in [0, 1], multiples of 1/255.

    Example:
        >>> JPEG(quality=75)(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 3, 32, 32])
    """

    differentiable = False

    def __init__(self, quality: int = 75) -> None:
        super().__init__()
        self.quality = check_int(quality, "quality", 1, 100, text=True)

    def purify(self, x: Tensor) -> Tensor:
        out = jpeg_roundtrip(x, self.quality)
        if torch.is_grad_enabled() and x.requires_grad:
            # Keep the graph connected with the true (zero) gradient: attacks then see zeros
            # (which the evaluation's sanity checks flag) instead of a missing-grad error.
            out = out + x * 0
        return out

    def differentiable_surrogate(self) -> Defense:
        return DifferentiableJPEG(self.quality)

    def config(self) -> dict[str, Any]:
        return {"name": "jpeg", "quality": self.quality}


class DifferentiableJPEG(Defense):
    """Kornia's differentiable JPEG at ``quality``: the adaptive-attack surrogate of :class:`JPEG`.

    Args:
        quality: JPEG quality, 1 to 100 (default 75).

    Shape:
        - Input: ``(B, 3, H, W)`` in [0, 1], any H and W.
        - Output: ``(B, 3, H, W)`` in [0, 1].

    Example:
        >>> x = torch.rand(1, 3, 32, 32, requires_grad=True)
        >>> DifferentiableJPEG(75)(x).sum().backward()
        >>> x.grad.shape
        torch.Size([1, 3, 32, 32])
    """

    differentiable = True

    def __init__(self, quality: int = 75) -> None:
        super().__init__()
        self.quality = check_int(quality, "quality", 1, 100, text=True)

    def purify(self, x: Tensor) -> Tensor:
        from kornia.enhance import jpeg_codec_differentiable  # heavy import, only when used

        quality = torch.tensor([float(self.quality)], dtype=x.dtype, device=x.device)
        return jpeg_codec_differentiable(x, quality)

    def config(self) -> dict[str, Any]:
        return {"name": "jpeg-diff", "quality": self.quality}
