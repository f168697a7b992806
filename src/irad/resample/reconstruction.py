"""Reconstruction phi (Eq. 2, 3): query a discrete image at arbitrary real coordinates.

Two reconstructions from Sec. 3.2 of the paper:

* :func:`bilinear_reconstruct` (Eq. 5): the weighted mean of the four pixels around ``(u, v)``.
* :func:`nearest_reconstruct` (Eq. 6): the pixel whose centre is nearest to ``(u, v)``.

Coordinates are in pixel units, (row, col), pixel centres at integers (see
:mod:`irad.resample.coordinates`). Both are written with ``gather`` rather than
``F.grid_sample`` so that a query exactly at a pixel centre returns that pixel bit for bit (the
normalise/unnormalise round trip inside ``grid_sample`` is off by float round-off), and so that
nearest ties have a translation-equivariant rule. Otherwise they agree with
``F.grid_sample(..., align_corners=False)`` for every padding mode (tested).

Border rule (``padding_mode``), for coordinates outside ``[0, H-1] x [0, W-1]``:

* ``"border"`` (default): the coordinate is clamped into the image, i.e. border pixels are
  replicated; nothing outside the image is invented.
* ``"zeros"``: pixels outside the image are 0 (bilinear blends towards 0 within half a pixel
  outside the outermost centres).
* ``"reflection"``: the coordinate is reflected about the image edges (``-0.5`` and
  ``n - 0.5``), then clamped, as ``grid_sample`` does with ``align_corners=False``.

Nearest ties: a coordinate exactly half-way between two centres goes to the larger index
(``floor(u + 0.5)``), so a shift of ``k + 0.5`` pixels is a translation by ``k + 1`` everywhere.
``grid_sample`` rounds half to even instead, which turns a half-pixel shift into a 2x
decimation; the two differ only on exact ties.
"""

from __future__ import annotations

import torch
from torch import Tensor

from irad.checks import check_choice, check_images
from irad.errors import InputError
from irad.registry import Registry

#: Border rules accepted by every reconstruction.
PADDING_MODES: tuple[str, ...] = ("border", "zeros", "reflection")


def _prepare(image: Tensor, coords: Tensor) -> tuple[Tensor, Tensor]:
    """Validate and broadcast ``image (B, C, H, W)`` and ``coords (B, H', W', 2)``."""
    check_images(image, "image", channels=None, check_range=False)
    if not isinstance(coords, Tensor):
        raise InputError(f"coords must be a torch.Tensor, got {type(coords).__name__}")
    if coords.ndim == 3:
        coords = coords.unsqueeze(0)
    if coords.ndim != 4 or coords.shape[-1] != 2:
        raise InputError(
            "coords must have shape (B, H', W', 2) or (H', W', 2) with (row, col) in pixel "
            f"units, got {tuple(coords.shape)}"
        )
    if not coords.is_floating_point():
        raise InputError(f"coords must be a floating-point tensor, got dtype {coords.dtype}")
    if coords.device != image.device:
        raise InputError(f"coords are on {coords.device} but the image is on {image.device}")
    b_img, b_crd = image.shape[0], coords.shape[0]
    if b_img != b_crd and 1 not in (b_img, b_crd):
        raise InputError(
            f"batch sizes differ: image has {b_img} images, coords {b_crd} grids "
            "(give one grid per image, or a single grid for all)"
        )
    if not bool(torch.isfinite(coords).all()):
        raise InputError("coords contain NaN or infinite values")
    batch = max(b_img, b_crd)
    return image.expand(batch, -1, -1, -1), coords.expand(batch, -1, -1, -1)


def _reflect(u: Tensor, n: int) -> Tensor:
    """Reflect about the image edges ``-0.5`` and ``n - 0.5`` (period ``2n``), then clamp."""
    v = torch.remainder((u + 0.5).abs(), 2 * n)
    v = torch.where(v > n, 2 * n - v, v)
    return (v - 0.5).clamp(0, n - 1)


def _inside(index: Tensor, n: int, dtype: torch.dtype) -> Tensor:
    """1 where ``0 <= index < n``, else 0, as ``dtype``."""
    return ((index >= 0) & (index < n)).to(dtype)


def _gather(image: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """``image[b, :, rows[b, k], cols[b, k]]`` for in-range integer indices: ``(B, C, N)``."""
    b, c, _, w = image.shape
    index = (rows * w + cols).view(b, 1, -1).expand(b, c, -1)
    return image.reshape(b, c, -1).gather(2, index)


def nearest_reconstruct(image: Tensor, coords: Tensor, *, padding_mode: str = "border") -> Tensor:
    """Nearest-neighbour reconstruction (Eq. 6) queried at real coordinates.

    ``out[b, :, i, j] = image[b, :, floor(u + 0.5), floor(v + 0.5)]`` with
    ``(u, v) = coords[b, i, j]``, and the border rule of ``padding_mode`` (module docstring).

    Gradients flow to the selected input pixels (the map is a selection, linear in the image);
    the gradient with respect to ``coords`` is zero almost everywhere.

    Args:
        image: images to query.
        coords: (row, col) query points in pixel units; one grid per image, or one for all.
        padding_mode: ``"border"`` (default), ``"zeros"`` or ``"reflection"``.

    Shape:
        - image: ``(B, C, H, W)``, floating point, any value range.
        - coords: ``(B, H', W', 2)``, ``(1, H', W', 2)`` or ``(H', W', 2)``.
        - Output: ``(B, C, H', W')``.

    Example:
        >>> img = torch.arange(4.0).view(1, 1, 2, 2)
        >>> nearest_reconstruct(img, torch.tensor([[[0.6, 0.4]]]))
        tensor([[[[2.]]]])
    """
    check_choice(padding_mode, "padding_mode", PADDING_MODES)
    image, coords = _prepare(image, coords)
    h, w = image.shape[-2:]
    u, v = coords[..., 0], coords[..., 1]
    if padding_mode == "reflection":
        u, v = _reflect(u, h), _reflect(v, w)
    # Rounding half up keeps nearest translation-equivariant: round(u + k) = round(u) + k.
    rows = torch.floor(u + 0.5).long()
    cols = torch.floor(v + 0.5).long()
    out = _gather(image, rows.clamp(0, h - 1), cols.clamp(0, w - 1))
    if padding_mode == "zeros":
        inside = _inside(rows, h, out.dtype) * _inside(cols, w, out.dtype)
        out = out * inside.view(out.shape[0], 1, -1)
    return out.view(*out.shape[:2], *coords.shape[1:3])


def bilinear_reconstruct(image: Tensor, coords: Tensor, *, padding_mode: str = "border") -> Tensor:
    """Bilinear reconstruction (Eq. 5) queried at real coordinates.

    The value at ``(u, v)`` is the weighted mean of the four pixels whose centres surround it,
    with weights ``(1 - a)(1 - b), (1 - a) b, a (1 - b), a b`` where ``a = u - floor(u)`` and
    ``b = v - floor(v)``. At a pixel centre the weights are exactly (1, 0, 0, 0), so the pixel is
    returned bit for bit.

    Differentiable in ``image`` and (almost everywhere) in ``coords``.

    Args:
        image: images to query.
        coords: (row, col) query points in pixel units; one grid per image, or one for all.
        padding_mode: ``"border"`` (default), ``"zeros"`` or ``"reflection"``.

    Shape:
        - image: ``(B, C, H, W)``, floating point, any value range.
        - coords: ``(B, H', W', 2)``, ``(1, H', W', 2)`` or ``(H', W', 2)``.
        - Output: ``(B, C, H', W')``.

    Example:
        >>> img = torch.tensor([[[[0.0, 1.0]]]])
        >>> bilinear_reconstruct(img, torch.tensor([[[0.0, 0.5]]]))
        tensor([[[[0.5000]]]])
    """
    check_choice(padding_mode, "padding_mode", PADDING_MODES)
    image, coords = _prepare(image, coords)
    b, c = image.shape[:2]
    h, w = image.shape[-2:]
    u, v = coords[..., 0], coords[..., 1]
    if padding_mode == "reflection":
        u, v = _reflect(u, h), _reflect(v, w)
    elif padding_mode == "border":
        u, v = u.clamp(0, h - 1), v.clamp(0, w - 1)
    u0, v0 = torch.floor(u), torch.floor(v)
    a = (u - u0).to(image.dtype).view(b, 1, -1)
    bb = (v - v0).to(image.dtype).view(b, 1, -1)
    r0, c0 = u0.long().view(b, 1, -1), v0.long().view(b, 1, -1)
    r1, c1 = r0 + 1, c0 + 1
    # Per-axis weights of the lower and upper neighbour; "zeros" drops neighbours outside.
    wr0, wr1, wc0, wc1 = 1 - a, a, 1 - bb, bb
    if padding_mode == "zeros":
        wr0, wr1 = wr0 * _inside(r0, h, a.dtype), wr1 * _inside(r1, h, a.dtype)
        wc0, wc1 = wc0 * _inside(c0, w, a.dtype), wc1 * _inside(c1, w, a.dtype)
    r0, r1, c0, c1 = r0.clamp(0, h - 1), r1.clamp(0, h - 1), c0.clamp(0, w - 1), c1.clamp(0, w - 1)
    # The four neighbours, stacked so that one gather reads them all: (B, 4, N).
    rows = torch.cat((r0, r0, r1, r1), dim=1)
    cols = torch.cat((c0, c1, c0, c1), dim=1)
    weights = torch.cat((wr0 * wc0, wr0 * wc1, wr1 * wc0, wr1 * wc1), dim=1)
    values = _gather(image, rows, cols).view(b, c, 4, -1)
    # At a pixel centre the weights are exactly (1, 0, 0, 0), so the sum is the pixel itself.
    out = (values * weights.unsqueeze(1)).sum(dim=2)
    return out.view(b, c, *coords.shape[1:3])


#: The reconstructions by name, with the short aliases of the paper's tables.
RECONSTRUCTIONS: Registry[Tensor] = Registry("reconstruction")
RECONSTRUCTIONS.register("bilinear", "bil", "linear")(bilinear_reconstruct)
RECONSTRUCTIONS.register("nearest", "nea", "near")(nearest_reconstruct)


def canonical_reconstruction(name: str) -> str:
    """Map a reconstruction name or alias (``bil``, ``nea``) to ``bilinear`` or ``nearest``."""
    return RECONSTRUCTIONS.canonical(name)


def reconstruct(
    image: Tensor, coords: Tensor, method: str = "bilinear", *, padding_mode: str = "border"
) -> Tensor:
    """Query ``image`` at ``coords`` with the reconstruction named ``method``.

    ``method`` is ``"bilinear"`` or ``"nearest"`` (aliases ``"bil"``, ``"nea"``); see
    :func:`bilinear_reconstruct` and :func:`nearest_reconstruct`.

    Shape:
        - image: ``(B, C, H, W)``.
        - coords: ``(B, H', W', 2)`` in pixel units, (row, col).
        - Output: ``(B, C, H', W')``.

    Example:
        >>> img = torch.rand(2, 3, 8, 8)
        >>> reconstruct(img, torch.zeros(2, 4, 4, 2), "nea").shape
        torch.Size([2, 3, 4, 4])
    """
    return RECONSTRUCTIONS.get(method)(image, coords, padding_mode=padding_mode)
