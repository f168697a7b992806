"""Pixel-centre coordinate grids and the conversions between the conventions in use.

Every coordinate maths of irad lives here: the grids, the unit conversions of points, of lengths
(cells, shifts) and LIIF's own formulas. Models and defenses call these functions and never
convert units inline.

irad's convention (used by every function in :mod:`irad.resample`):
    **pixel units, (row, col) order, integers at pixel centres.** The grid ``G`` of Eq. (4) is
    ``G[i, j] = (i, j)``; pixel ``(i, j)`` covers the square ``[i - 0.5, i + 0.5] x
    [j - 0.5, j + 0.5]``, so the image spans ``[-0.5, H - 0.5] x [-0.5, W - 0.5]``. This is the
    convention of ``F.grid_sample(..., align_corners=False)`` once its normalised coordinates are
    unnormalised, so the two agree exactly in meaning (see :func:`to_grid_sample_xy`).

The two other conventions, and how they relate to pixel units ``p`` along an axis of size ``n``:

* **normalised (row, col)** (LIIF ``make_coord``, the official IRAD code): pixel centres in
  ``(-1, 1)``, ``q = (2 p + 1) / n - 1``; the image edges are at -1 and 1.
  :func:`pixel_to_normalized` / :func:`normalized_to_pixel`.
* **grid_sample (x, y)**: the same normalised values in the opposite order, ``x`` for the column
  and ``y`` for the row. :func:`to_grid_sample_xy` / :func:`from_grid_sample_xy`.

A *length* (a cell, the extent of an output pixel; a shift of a sample point) of ``d`` pixels is
``2 d / n`` in both normalised conventions: :func:`length_to_normalized` /
:func:`length_to_pixel`; the cell of a same-size grid is :func:`normalized_cell`.

LIIF's formulas (:func:`make_coord`, :func:`liif_normalize`) compute the same normalised values
with LIIF's order of float operations, so that the official checkpoints see bit-identical
inputs (LIIF's output is very sensitive to the last bit on the bottom/right border); they can
differ from :func:`pixel_to_normalized` in the last bit.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from irad.errors import InputError


def _size(size: Sequence[int]) -> tuple[int, int]:
    if len(size) != 2 or any(int(s) != s or s < 1 for s in size):
        raise InputError(f"size must be (H, W) with two positive integers, got {tuple(size)}")
    return int(size[0]), int(size[1])


def _check_coords(coords: object, name: str = "coords") -> Tensor:
    if not isinstance(coords, Tensor):
        raise InputError(f"{name} must be a torch.Tensor, got {type(coords).__name__}")
    if coords.ndim < 1 or coords.shape[-1] != 2:
        raise InputError(
            f"{name} must have a last dimension of size 2 (row, col), got {tuple(coords.shape)}"
        )
    if not coords.is_floating_point():
        raise InputError(f"{name} must be a floating-point tensor, got dtype {coords.dtype}")
    return coords


def make_grid(
    height: int,
    width: int,
    *,
    normalized: bool = False,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """The grid ``G`` of pixel-centre coordinates of an ``H x W`` image, in (row, col) order.

    Args:
        height: number of rows ``H``.
        width: number of columns ``W``.
        normalized: ``False`` (default): pixel units, ``G[i, j] = (i, j)``. ``True``: the
            LIIF / official-IRAD normalised convention, ``G[i, j] = ((2i+1)/H - 1, (2j+1)/W - 1)``.
        dtype: floating dtype of the grid.
        device: device of the grid.

    Returns:
        The grid ``G``.

    Shape:
        - Output: ``(H, W, 2)``.

    Example:
        >>> make_grid(2, 3)[1, 2]
        tensor([1., 2.])
        >>> make_grid(2, 2, normalized=True)[0, 0]
        tensor([-0.5000, -0.5000])
    """
    h, w = _size((height, width))
    rows = torch.arange(h, dtype=dtype, device=device)
    cols = torch.arange(w, dtype=dtype, device=device)
    grid = torch.stack(torch.meshgrid(rows, cols, indexing="ij"), dim=-1)
    return pixel_to_normalized(grid, (h, w)) if normalized else grid


def _sizes_like(coords: Tensor, size: Sequence[int]) -> Tensor:
    h, w = _size(size)
    return torch.tensor([h, w], dtype=coords.dtype, device=coords.device)


def pixel_to_normalized(coords: Tensor, size: Sequence[int]) -> Tensor:
    """Pixel-unit (row, col) coordinates -> normalised (row, col) in the LIIF convention.

    ``q = (2 p + 1) / n - 1`` per axis, so pixel centres map into ``(-1, 1)`` and the image edges
    ``-0.5`` and ``n - 0.5`` map to -1 and 1.

    Args:
        coords: coordinates in pixel units, (row, col) in the last dimension.
        size: the image size ``(H, W)`` the coordinates refer to.

    Shape:
        - coords: ``(*, 2)``.
        - Output: ``(*, 2)``.

    Example:
        >>> pixel_to_normalized(torch.tensor([0.0, 3.0]), (4, 4))
        tensor([-0.7500,  0.7500])
    """
    coords = _check_coords(coords)
    n = _sizes_like(coords, size)
    return (2 * coords + 1) / n - 1


def normalized_to_pixel(coords: Tensor, size: Sequence[int]) -> Tensor:
    """Normalised (row, col) coordinates (LIIF convention) -> pixel units; inverse of
    :func:`pixel_to_normalized`.

    Shape:
        - coords: ``(*, 2)``.
        - Output: ``(*, 2)``.

    Example:
        >>> normalized_to_pixel(torch.tensor([-0.75, 0.75]), (4, 4))
        tensor([0., 3.])
    """
    coords = _check_coords(coords)
    n = _sizes_like(coords, size)
    return ((coords + 1) * n - 1) / 2


def to_grid_sample_xy(coords: Tensor, size: Sequence[int]) -> Tensor:
    """Pixel-unit (row, col) coordinates -> the ``grid`` argument of ``F.grid_sample``.

    The result is normalised ``(x, y) = (col, row)``; with ``align_corners=False``,
    ``F.grid_sample(image, to_grid_sample_xy(coords, image.shape[-2:]))`` samples the same points
    as :func:`irad.resample.bilinear_reconstruct` ``(image, coords)``.

    Shape:
        - coords: ``(*, 2)`` (row, col) in pixel units.
        - Output: ``(*, 2)`` (x, y) normalised.

    Example:
        >>> to_grid_sample_xy(torch.tensor([0.0, 3.0]), (2, 4))
        tensor([ 0.7500, -0.5000])
    """
    return pixel_to_normalized(coords, size).flip(-1)


def from_grid_sample_xy(grid: Tensor, size: Sequence[int]) -> Tensor:
    """``F.grid_sample``'s normalised (x, y) -> pixel-unit (row, col); inverse of
    :func:`to_grid_sample_xy`.

    Shape:
        - grid: ``(*, 2)`` (x, y) normalised.
        - Output: ``(*, 2)`` (row, col) in pixel units.

    Example:
        >>> from_grid_sample_xy(torch.tensor([0.75, -0.5]), (2, 4))
        tensor([0., 3.])
    """
    grid = _check_coords(grid, "grid")
    return normalized_to_pixel(grid.flip(-1), size)


# --------------------------------------------------------------------------------------------
# lengths: cells and shifts
# --------------------------------------------------------------------------------------------


def _per_axis(size: Sequence[int], like: Tensor, scale: str) -> Tensor:
    h, w = _size(size)
    values = [2.0 / h, 2.0 / w] if scale == "to_normalized" else [h / 2.0, w / 2.0]
    return torch.tensor(values, dtype=like.dtype, device=like.device)


def length_to_normalized(lengths: Tensor, size: Sequence[int]) -> Tensor:
    """Lengths in pixels, (row, col) -> normalised lengths: ``2 d / n`` per axis.

    For cells (the extent of an output pixel) and shifts of sample points; unlike
    :func:`pixel_to_normalized` there is no offset.

    Shape:
        - lengths: ``(*, 2)``; output: same.

    Example:
        >>> length_to_normalized(torch.tensor([1.0, 0.5]), (4, 8))
        tensor([0.5000, 0.1250])
    """
    lengths = _check_coords(lengths, "lengths")
    return lengths * _per_axis(size, lengths, "to_normalized")


def length_to_pixel(lengths: Tensor, size: Sequence[int]) -> Tensor:
    """Normalised lengths -> pixels: ``d n / 2`` per axis; inverse of
    :func:`length_to_normalized`.

    Shape:
        - lengths: ``(*, 2)``; output: same.

    Example:
        >>> length_to_pixel(torch.tensor([0.5, 0.125]), (4, 8))
        tensor([1.0000, 0.5000])
    """
    lengths = _check_coords(lengths, "lengths")
    return lengths * _per_axis(size, lengths, "to_pixel")


def normalized_cell(
    size: Sequence[int],
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """The normalised cell of one pixel of an ``H x W`` grid, ``(2 / H, 2 / W)`` (LIIF's
    ``cell`` for rendering at that size).

    Shape:
        - Output: ``(2,)``.

    Example:
        >>> normalized_cell((4, 8))
        tensor([0.5000, 0.2500])
    """
    return length_to_normalized(torch.ones(2, dtype=dtype, device=device), size)


# --------------------------------------------------------------------------------------------
# LIIF's formulas
# --------------------------------------------------------------------------------------------


def make_coord(
    size: Sequence[int],
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Normalised (row, col) coordinates of the pixel centres of an ``H x W`` grid.

    Computed exactly as LIIF's ``make_coord`` (``-1 + r + 2 r k`` with ``r = 1 / n``) so that
    the official models see bit-identical inputs; mathematically
    ``make_grid(H, W, normalized=True)``.

    Shape:
        - Output: ``(H, W, 2)``.

    Example:
        >>> make_coord((2, 4))[0, :, 1]
        tensor([-0.7500, -0.2500,  0.2500,  0.7500])
    """
    seqs = []
    for n in _size(size):
        r = 1.0 / n
        seqs.append(-1 + r + (2 * r) * torch.arange(n, device=device, dtype=dtype))
    rows, cols = torch.meshgrid(seqs[0], seqs[1], indexing="ij")
    return torch.stack([rows, cols], dim=-1)


def liif_normalize(coords: Tensor, size: Sequence[int]) -> Tensor:
    """Pixel-unit (row, col) -> normalised, computed exactly as :func:`make_coord` does.

    Mathematically :func:`pixel_to_normalized`; the operations are ordered like LIIF's
    ``make_coord`` so that integer pixel coordinates give bit-identical values to the rendering
    grid.

    Shape:
        - coords: ``(..., 2)``; output: same.

    Example:
        >>> liif_normalize(torch.tensor([0.0, 3.0]), (2, 4))
        tensor([-0.5000,  0.7500])
    """
    coords = _check_coords(coords)
    axes = []
    for k, n in enumerate(_size(size)):
        r = 1.0 / float(n)
        axes.append((-1 + r) + (2 * r) * coords[..., k])
    return torch.stack(axes, dim=-1)


def resize_grid(
    out_size: Sequence[int],
    in_size: Sequence[int],
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[Tensor, Tensor]:
    """Centres of an ``out_size`` grid covering the same extent as an ``in_size`` image.

    Returns ``(coords, cell)`` in the *input's* pixel units: the coordinates ``(H', W', 2)`` and
    the cell ``(2,)`` = ``(H / H', W / W')``. Used for super-resolution and rendering at another
    size; for ``out_size == in_size`` the coordinates equal :func:`make_grid`.

    Example:
        >>> coords, cell = resize_grid((4, 4), (2, 2))
        >>> coords[0, 0], cell
        (tensor([-0.2500, -0.2500]), tensor([0.5000, 0.5000]))
    """
    out_h, out_w = _size(out_size)
    in_h, in_w = _size(in_size)
    if (out_h, out_w) == (in_h, in_w):
        coords = make_grid(in_h, in_w, device=device, dtype=dtype)
    else:
        coords = normalized_to_pixel(
            make_coord((out_h, out_w), device=device, dtype=dtype), in_size
        )
    cell = torch.tensor([in_h / out_h, in_w / out_w], device=device, dtype=dtype)
    return coords, cell
