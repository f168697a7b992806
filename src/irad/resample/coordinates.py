"""Pixel-centre coordinate grids and the conversions between the three conventions in use.

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

A shift of ``d`` pixels is a shift of ``2 d / n`` in both normalised conventions.
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
