"""Random resizing and padding (Xie et al. 2017), registered as ``randomization``.

Xie et al. (ImageNet, Inception at 299 x 299): resize the image to ``r x r`` with ``r`` drawn
uniformly from ``[299, 331)``, then zero-pad it at a random position to ``331 x 331``. irad keeps
their proportions for any size: the padded size is ``S = round(H * ratio)`` with
``ratio = 331 / 299`` (per axis, so non-square images work), ``r`` is drawn from ``[H, S)``, and
the padded image is resized back to ``H x W`` (bilinear), because the defense must return the
input's shape and CIFAR classifiers expect 32 x 32. For CIFAR-10: ``S = 35``, ``r in {32, 33,
34}``, ``S - r`` = 1 to 3 pixels of zero padding split at random between the two sides, then
35 -> 32. Each image is transformed with probability ``p`` (0.8, as in
the ARES re-implementation commonly used for this baseline) and is passed through unchanged
otherwise.

Everything is vectorised: sizes, offsets and the coin flips are drawn per image, and the
resize-and-pad of the whole batch is one ``gather`` through :mod:`irad.resample`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from irad.checks import check_choice, check_float, check_seed
from irad.defenses.base import Defense
from irad.resample import reconstruct
from irad.resample.samplers import make_generator, uniform

#: Xie et al.'s padded size over input size (331 / 299).
XIE_RATIO = 331 / 299


def padded_size(size: int, ratio: float) -> int:
    """The padded size ``S = max(size, round(size * ratio))`` for one axis."""
    return max(size, round(size * ratio))


def random_resize_pad(
    x: Tensor,
    *,
    ratio: float = XIE_RATIO,
    p: float = 0.8,
    mode: str = "nearest",
    pad_value: float = 0.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Xie et al.'s random resize and pad, then resize back to the input size.

    For each image, with probability ``p``: resize ``H x W`` to ``r_h x r_w`` (same relative
    scale on both axes, ``r_h`` uniform on ``[H, S_h)``), paste it at a uniform random offset into
    an ``S_h x S_w`` canvas filled with ``pad_value``, resize the canvas back to ``H x W``
    (bilinear, ``align_corners=False``). Otherwise the image is returned unchanged.

    Args:
        x: images.
        ratio: padded size over input size (``S = round(H * ratio)``), ``>= 1``.
        p: probability of transforming each image, in [0, 1].
        mode: interpolation of the random resize, ``"nearest"`` (Xie et al.) or ``"bilinear"``.
        pad_value: value of the padding (Xie et al.: 0).
        generator: source of randomness (``None``: global torch RNG).

    Shape:
        - x: ``(B, C, H, W)``; Output: ``(B, C, H, W)``.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> random_resize_pad(torch.rand(4, 3, 32, 32), generator=g).shape
        torch.Size([4, 3, 32, 32])
    """
    p = check_float(p, "p (probability of transforming an image)", 0, 1, text=True)
    ratio = check_float(ratio, "ratio (padded size / input size)", 1, 4, text=True)
    if p == 0:
        return x
    b, _, h, w = x.shape
    s_h, s_w = padded_size(h, ratio), padded_size(w, ratio)
    draws = uniform((b, 4), generator=generator, dtype=torch.float64, device=x.device)
    apply = draws[:, 0] < p
    # One scale draw for both axes keeps the aspect ratio, as Xie et al.'s square r x r does.
    r_h = h + torch.floor(draws[:, 1] * max(s_h - h, 1)).clamp(max=max(s_h - h - 1, 0))
    r_w = w + torch.floor(draws[:, 1] * max(s_w - w, 1)).clamp(max=max(s_w - w - 1, 0))
    top = torch.floor(draws[:, 2] * (s_h - r_h + 1)).clamp(max=s_h - r_h)
    left = torch.floor(draws[:, 3] * (s_w - r_w + 1)).clamp(max=s_w - r_w)

    # Canvas pixel (a, c) shows resized pixel (a - top, c - left), i.e. the source point
    # ((a - top + 0.5) * H / r_h - 0.5, ...) under align_corners=False resizing.
    rows = torch.arange(s_h, dtype=torch.float64, device=x.device).view(1, s_h, 1)
    cols = torch.arange(s_w, dtype=torch.float64, device=x.device).view(1, 1, s_w)
    local_r = rows - top.view(b, 1, 1)
    local_c = cols - left.view(b, 1, 1)
    inside = (local_r >= 0) & (local_r < r_h.view(b, 1, 1))
    inside = inside & (local_c >= 0) & (local_c < r_w.view(b, 1, 1))
    src_r = (local_r + 0.5) * (h / r_h.view(b, 1, 1)) - 0.5
    src_c = (local_c + 0.5) * (w / r_w.view(b, 1, 1)) - 0.5
    coords = torch.stack(torch.broadcast_tensors(src_r, src_c), dim=-1)
    coord_dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    canvas = reconstruct(x, coords.to(coord_dtype), mode, padding_mode="border")
    canvas = torch.where(inside.unsqueeze(1), canvas, torch.full_like(canvas, pad_value))
    if (s_h, s_w) != (h, w):
        canvas = F.interpolate(canvas, size=(h, w), mode="bilinear", align_corners=False)
    return torch.where(apply.view(b, 1, 1, 1), canvas, x)


class Randomization(Defense):
    """Random resizing and padding (Xie et al. 2017), applied with probability ``p``.

    Args:
        p: probability of transforming each image, in [0, 1] (default 0.8).
        ratio: padded size over input size, ``>= 1`` (default Xie et al.'s 331/299; CIFAR:
            resize to 32..34, pad to 35, resize back to 32).
        mode: interpolation of the random resize, ``"nearest"`` (default, Xie et al.) or
            ``"bilinear"``.
        pad_value: padding value in [0, 1] (default 0).
        seed: seed of the defense's own generator (``None``: global torch RNG).

    ``stochastic`` unless ``p == 0``; differentiable (nearest and bilinear pass gradients to the
    pixels they read).

    Shape:
        - Input: ``(B, 3, H, W)`` in [0, 1], any H and W.
        - Output: ``(B, 3, H, W)`` in [0, 1].

    Example:
        >>> Randomization(p=0.8, seed=0)(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 3, 32, 32])
    """

    differentiable = True

    def __init__(
        self,
        p: float = 0.8,
        ratio: float = XIE_RATIO,
        mode: str = "nearest",
        pad_value: float = 0.0,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        self.p = check_float(p, "p (probability of transforming an image)", 0, 1, text=True)
        self.ratio = check_float(ratio, "ratio (padded size / input size)", 1, 4, text=True)
        self.mode = check_choice(mode, "mode", ("nearest", "bilinear"))
        self.pad_value = check_float(pad_value, "pad_value", 0, 1, text=True)
        self.seed = check_seed(seed, optional=True, text=True)
        self.generator = make_generator(self.seed)
        self.stochastic = self.p > 0

    def purify(self, x: Tensor) -> Tensor:
        return random_resize_pad(
            x,
            ratio=self.ratio,
            p=self.p,
            mode=self.mode,
            pad_value=self.pad_value,
            generator=self.generator,
        )

    def config(self) -> dict[str, Any]:
        return {
            "name": "randomization",
            "p": self.p,
            "ratio": self.ratio,
            "mode": self.mode,
            "pad_value": self.pad_value,
            "seed": self.seed,
        }
