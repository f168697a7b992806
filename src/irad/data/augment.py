"""Training augmentation on whole batches: random crop with zero padding, horizontal flip."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from irad.checks import check_images
from irad.errors import InputError


def random_crop_flip(
    x: Tensor,
    padding: int = 4,
    flip: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Pad each image with ``padding`` zeros, crop a random ``H x W`` window, flip with p = 0.5.

    The standard CIFAR training augmentation, drawn independently per image but computed for
    the whole batch at once with one gather (no Python loop over images). Random numbers come
    from ``generator`` when given, so a seeded generator reproduces the batch exactly.

    Shape:
        - ``x``: ``(B, C, H, W)`` float.
        - output: ``(B, C, H, W)``, same dtype and device.

    Example:
        >>> x = torch.rand(8, 3, 32, 32)
        >>> random_crop_flip(x, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([8, 3, 32, 32])
    """
    check_images(x, "x", channels=None, check_range=False)
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise InputError(f"padding must be a non-negative integer, got {padding!r}")
    b, _, h, w = x.shape
    rng_device = generator.device if generator is not None else x.device
    # Draw on the generator's device, then move: the same seed gives the same crops on any device.
    top = torch.randint(0, 2 * padding + 1, (b,), generator=generator, device=rng_device)
    left = torch.randint(0, 2 * padding + 1, (b,), generator=generator, device=rng_device)
    rows = top.to(x.device)[:, None] + torch.arange(h, device=x.device)  # (B, H)
    cols = left.to(x.device)[:, None] + torch.arange(w, device=x.device)  # (B, W)
    if flip:
        flipped = torch.rand(b, generator=generator, device=rng_device) < 0.5
        cols = torch.where(flipped.to(x.device)[:, None], cols.flip(1), cols)
    padded = F.pad(x, (padding, padding, padding, padding)) if padding else x
    c, padded_w = x.shape[1], w + 2 * padding
    # One flat gather over the padded pixels (several times faster than advanced indexing).
    flat = (rows[:, :, None] * padded_w + cols[:, None, :]).reshape(b, 1, h * w)
    out = padded.reshape(b, c, -1).gather(2, flat.expand(b, c, h * w))
    return out.reshape(b, c, h, w)


class RandomCropFlip(nn.Module):
    """Module form of :func:`random_crop_flip`, for ``iterate_batches(..., augment=...)``.

    Args:
        padding: zero padding on each side before the random crop (4 for CIFAR).
        flip: also flip horizontally with probability 0.5.

    Shape:
        - ``x``: ``(B, C, H, W)``; output: the same shape.

    Example:
        >>> aug = RandomCropFlip(padding=4)
        >>> aug(torch.rand(2, 3, 32, 32), torch.Generator().manual_seed(0)).shape
        torch.Size([2, 3, 32, 32])
    """

    def __init__(self, padding: int = 4, flip: bool = True) -> None:
        super().__init__()
        if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
            raise InputError(f"padding must be a non-negative integer, got {padding!r}")
        self.padding = padding
        self.flip = flip

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return random_crop_flip(x, self.padding, self.flip, generator)

    def extra_repr(self) -> str:
        return f"padding={self.padding}, flip={self.flip}"
