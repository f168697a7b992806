"""The implicit representation of Sec. 4.2: EDSR features + a local implicit function (LIIF).

An image ``x`` becomes a continuous function: ``F = FEAT(x)`` (:class:`~irad.models.edsr.EDSR`)
gives one feature vector per pixel, and the colour at any real coordinate is predicted by an MLP
φ from the features of the four nearest feature pixels, blended with area weights (Eq. 9; Chen et
al. 2021, "local ensemble"). For each of the four neighbours ``[k, l]`` the MLP reads

* the 3×3-unfolded feature around ``[k, l]`` (``9 C`` values, LIIF's "feature unfolding"),
* the relative coordinate ``query - centre[k, l]`` scaled by the feature size (LIIF's
  ``rel_coord[:, :, 0] *= H``; in pixels this is *twice* the offset, since a pixel spans 2/H),
* the cell size (the extent of the output pixel), scaled the same way (LIIF's "cell decoding"),

and the four predictions are weighted by the area of the rectangle between the query and the
*diagonally opposite* neighbour (LIIF's swap), so the nearest neighbour gets the largest weight.

Coordinates
-----------
The public API takes **pixel** units (row, col), with the centre of pixel ``[i, j]`` at
``(i, j)``, as :mod:`irad.resample` does; a cell is the output pixel's size in input pixels (1
for a same-size reconstruction, 0.5 for ×2 super-resolution). Inside, LIIF works in
**normalised** units ([-1, 1], pixel centres at ``(2 i + 1) / H - 1``). Every conversion and
grid is a function of :mod:`irad.resample.coordinates` (:func:`make_coord`,
:func:`liif_normalize`, :func:`length_to_normalized`, :func:`normalized_cell`), which uses
LIIF's own formulas where the official models need bit-identical coordinates.

Border rule (LIIF's, kept so that its checkpoints behave the same): the four neighbour look-ups
are clamped into the image and the relative coordinate is not, so a query outside the image
extrapolates from the border features. On the last row and column, a query at a pixel centre
finds the clamped neighbours at distance 0 along one axis, all four areas vanish (up to the
1e-9 that LIIF adds) and the four predictions are averaged with equal weights; trained decoders
learn to live with this (they see the relative coordinates), an untrained identity-like one shows
it (``tests/test_implicit.py``).

Queries are processed in chunks (``chunk_size`` query points per pass, summed over the batch),
and the 3×3 neighbourhoods are gathered per chunk rather than unfolding the whole feature map,
so memory stays bounded for large images when no gradient is recorded.

Two paths compute the same function (``fast=True``, the default, or ``fast=False``):

* the **reference path** (``fast=False``) is LIIF's per-query algorithm: for every query and
  each of its four neighbours it gathers the 3×3-unfolded feature and runs the whole MLP on
  ``[unfolded feature, relative coordinate, cell]``. Official checkpoints reproduce the authors'
  forward on it to float rounding (``tests/test_official.py``).
* the **fast path** (``fast=True``) uses that the MLP's first layer is linear: its map of the
  unfolded feature is a 3×3 convolution of the feature map, computed once per feature pixel
  (:func:`first_layer_projection`) instead of once per (query, neighbour) pair, then gathered
  for the four neighbours, with the relative-coordinate and cell columns (linear in those
  inputs) added after. Ensemble terms whose weight is below :data:`SKIP_WEIGHT` are skipped
  when the weights carry no gradient: on the pixel-centre grid (SampleNet's queries, RECONS,
  stage-1 queries) three of the four weights are about 2.5e-10 away from the last row and
  column, so about one term in four is computed; on the last row and column all four are kept
  (the border rule). Pairs are processed in blocks of :data:`FAST_BLOCK` per thread (sized
  for the L2 cache) through reused buffers when no gradient is recorded, and the first-layer
  projections of at most :data:`PROJECTION_BUDGET` values are held at a time. The encoder runs
  channels last with in-place ReLUs and additions (:class:`~irad.models.edsr.EDSR`). Same
  outputs and gradients as the reference path up to float rounding
  (``tests/test_fast_path.py``: 1e-6).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.utils.checkpoint
from torch import Tensor, nn
from torch.nn import functional as F

from irad.checkpoint import config_field
from irad.errors import ConfigError, InputError
from irad.models.edsr import EDSR, EDSRConfig
from irad.resample.coordinates import (
    length_to_normalized,
    liif_normalize,
    make_coord,
    normalized_cell,
)

# LIIF nudges the four neighbour look-ups off the exact pixel boundaries by this much so that a
# query at a pixel centre picks the pixel itself and its lower/right neighbours deterministically.
_EPS_SHIFT = 1e-6
# LIIF adds this to every area so that a query exactly at a centre does not divide by zero.
_AREA_EPS = 1e-9
#: Default number of query points per pass (summed over the batch).
DEFAULT_CHUNK_SIZE = 8192
#: Global skips of the decoder (:class:`ImplicitConfig`).
SKIPS = ("none", "bilinear")
#: Fast path: an ensemble term whose weight is below this is skipped when the weights carry no
#: gradient. On the pixel-centre grid the skipped weights are 1e-9 / (4 + 3e-9) ≈ 2.5e-10, so a
#: skipped query changes by at most 3 × 2.5e-10 × max |prediction| (and by at most
#: 3 × SKIP_WEIGHT × max |prediction| anywhere): below 1e-6 for predictions up to 1,000.
SKIP_WEIGHT = 1e-8
#: Fast path: (query, neighbour) pairs per block and per intra-op thread (a block holds
#: ``FAST_BLOCK × torch.get_num_threads()`` pairs; the GEMMs and element-wise ops split its rows
#: across the threads). One thread's share of an activation buffer is then 4 MiB at hidden 256.
#: Measured at the paper's sizes (docs/implicit.md): 1024-4096 are equally fast on one thread,
#: 16384 is 10 % slower (cache); on a loaded machine every block's dozen OpenMP barriers cost
#: time, so the largest block that keeps the single-thread speed is used.
FAST_BLOCK = 4096
#: Fast path: most first-layer projections (values) held at once; images are processed in
#: groups that fit (16 images of 32 × 32 at hidden 256; one image at least).
PROJECTION_BUDGET = 4 * 2**20


def bilinear_at(image: Tensor, coord: Tensor) -> Tensor:
    """Bilinear samples of ``image`` at normalised (row, col) coordinates, border-clamped.

    Differentiable in both the image and the coordinates (SampleNet's gradient reaches the
    sampling points through it).

    Shape:
        - image: ``(B, C, H, W)``; coord: ``(B, Q, 2)``; output ``(B, Q, C)``.
    """
    grid = coord.flip(-1).unsqueeze(2)  # (B, Q, 1, 2) in grid_sample's (x, y) order
    out = F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.squeeze(-1).transpose(1, 2)


def _check_queries(coords: Tensor, batch: int, name: str) -> Tensor:
    if not isinstance(coords, Tensor) or not coords.is_floating_point():
        raise InputError(f"{name} must be a floating-point tensor of shape (B, Q, 2)")
    if coords.ndim == 2 and coords.shape[-1] == 2:
        coords = coords.unsqueeze(0).expand(batch, -1, -1)
    if coords.ndim != 3 or coords.shape[-1] != 2 or coords.shape[0] != batch:
        raise InputError(
            f"{name} must have shape (B, Q, 2) with B={batch} (or (Q, 2) shared by the batch), "
            f"got {tuple(coords.shape)}"
        )
    return coords


# --------------------------------------------------------------------------------------------
# MLP and the local ensemble
# --------------------------------------------------------------------------------------------


class MLP(nn.Module):
    """``Linear-ReLU-...-Linear``; parameters ``layers.<2k>.weight`` as in LIIF's ``mlp``.

    Shape:
        - Input: ``(..., in_dim)``; output: ``(..., out_dim)``.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden: Sequence[int]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        last = in_dim
        for h in hidden:
            layers += [nn.Linear(last, h), nn.ReLU()]
            last = h
        layers.append(nn.Linear(last, out_dim))
        self.layers = nn.Sequential(*layers)
        self.in_dim, self.out_dim = in_dim, out_dim

    @property
    def last(self) -> nn.Linear:
        layer = self.layers[-1]
        assert isinstance(layer, nn.Linear)
        return layer

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)

    def forward_unfolded(self, feat: Tensor, extra: Tensor, channels: int) -> Tensor:
        """``forward(cat([unfold_channel_major(feat), extra]))`` without building that input.

        ``feat`` holds 3×3 neighbourhoods in position-major order (``k * C + c``); the first
        layer's weight columns (stored channel-major, ``c * 9 + k``, as in LIIF) are permuted
        to match, and the ``extra`` columns (relative coordinate, cell) are applied separately.
        Same result as :meth:`forward` up to float rounding, with two large copies fewer.

        Shape:
            - feat: ``(..., 9 C)``; extra: ``(..., in_dim - 9 C)``; output ``(..., out_dim)``.
        """
        first = self.layers[0]
        assert isinstance(first, nn.Linear)
        n_feat = 9 * channels
        w = first.weight
        w_feat = w[:, :n_feat].reshape(-1, channels, 9).transpose(1, 2).reshape(-1, n_feat)
        lead = feat.shape[:-1]
        h = F.linear(extra, w[:, n_feat:], first.bias).reshape(-1, w.shape[0])
        if torch.is_autocast_enabled(h.device.type):  # autocast does not cover addmm_
            h = torch.addmm(h, feat.reshape(-1, n_feat), w_feat.t()).view(*lead, -1)
        else:
            h = h.addmm_(feat.reshape(-1, n_feat), w_feat.t()).view(*lead, -1)
        return self.layers[1:](h)


@dataclass
class FeatureField:
    """Features prepared once per image batch for any number of local-ensemble queries.

    Holds the feature map zero-padded by one pixel and flattened, so the 3×3 neighbourhood of
    any pixel is a gather (same values, same order as ``F.unfold(feat, 3, padding=1)``), plus
    the normalised centres of the feature pixels.

    ``image`` is the encoder's input in LIIF's scale ([-1, 1]); it is set (by
    :meth:`ImplicitRepresentation.field`) only for a representation with a bilinear skip.

    Shape:
        - feat: ``(B, C, h, w)``; image: ``(B, 3, h, w)`` or ``None``.
    """

    feat: Tensor
    image: Tensor | None = None
    row_centres: Tensor = field(init=False, repr=False)
    col_centres: Tensor = field(init=False, repr=False)
    _padded: Tensor | None = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        h, w = self.feat.shape[-2:]
        grid = make_coord((h, w), device=self.feat.device, dtype=self.feat.dtype)
        self.row_centres = grid[:, 0, 0].contiguous()
        self.col_centres = grid[0, :, 1].contiguous()

    @property
    def padded(self) -> Tensor:
        """The feature map zero-padded by one pixel, ``(B, (h+2)(w+2), C)``, built on first use.

        Channels last, so each gathered neighbour is a contiguous row.
        """
        if self._padded is None:
            pad = F.pad(self.feat, (1, 1, 1, 1))
            self._padded = pad.flatten(2).transpose(1, 2).contiguous()
        return self._padded

    @property
    def size(self) -> tuple[int, int]:
        return int(self.feat.shape[-2]), int(self.feat.shape[-1])

    @property
    def channels(self) -> int:
        return int(self.feat.shape[1])

    def unfolded_at(self, i: Tensor, j: Tensor, *, channel_major: bool = True) -> Tensor:
        """3×3-unfolded features at integer feature positions ``(i, j)`` of shape ``(..., B, q)``.

        Returns ``(..., B, q, 9 C)``. ``channel_major=True`` orders them like ``F.unfold``
        (``c * 9 + 3 * di + dj``, the layout LIIF's MLP weights expect); ``False`` gives the
        gather's natural order (``(3 * di + dj) * C + c``), which :class:`MLP` consumes without
        the transposing copy by permuting its first layer's columns instead.
        """
        b, c = self.feat.shape[:2]
        wp = self.feat.shape[-1] + 2
        per_image = self.padded.shape[1]
        offsets = torch.arange(3, device=i.device)
        # padded position of neighbour (di, dj) of (i, j) is (i + di, j + dj), di, dj in 0..2
        rows = i.unsqueeze(-1).unsqueeze(-1) + offsets.view(3, 1)
        cols = j.unsqueeze(-1).unsqueeze(-1) + offsets.view(1, 3)
        flat = (rows * wp + cols).flatten(-2)  # (..., B, q, 9)
        # Global row in the (B * P, C) table, so one index_select returns the final layout.
        image = torch.arange(b, device=i.device).view(b, 1, 1) * per_image
        gathered = self.padded.reshape(b * per_image, c).index_select(0, (flat + image).reshape(-1))
        gathered = gathered.view(*flat.shape, c)  # (..., B, q, 9, C)
        if channel_major:
            gathered = gathered.transpose(-1, -2)
        return gathered.reshape(*flat.shape[:-1], c * 9)

    def unfolded_rows(
        self, image: Tensor, i: Tensor, j: Tensor, out: Tensor | None = None
    ) -> Tensor:
        """3×3-unfolded features of pixels ``(image, i, j)`` (1-D index tensors of length K), in
        the gather's position-major order (``(3 * di + dj) * C + c``); ``out``: a ``(K * 9, C)``
        buffer to gather into (no gradient).

        Returns ``(K, 9 C)``.
        """
        c = self.channels
        wp = self.feat.shape[-1] + 2
        per_image = self.padded.shape[1]
        offsets = torch.arange(3, device=i.device)
        taps = (offsets.view(3, 1) * wp + offsets.view(1, 3)).flatten()  # (9,)
        base = image * per_image + i * wp + j  # padded position of the top-left tap
        index = (base.unsqueeze(-1) + taps).flatten()
        table = self.padded.reshape(-1, c)
        if out is None:
            return table.index_select(0, index).view(-1, 9 * c)
        return torch.index_select(table, 0, index, out=out).view(-1, 9 * c)


def local_ensemble(
    field_: FeatureField,
    coord: Tensor,
    cell: Tensor,
    mlp: nn.Module,
    *,
    chunk_size: int | None = DEFAULT_CHUNK_SIZE,
    checkpoint: bool = False,
    fast: bool = True,
) -> Tensor:
    """LIIF's query (Eq. 9): blend ``mlp`` over the four nearest feature pixels.

    Args:
        field_: prepared features (:class:`FeatureField`).
        coord: normalised (row, col) query coordinates.
        cell: normalised cell sizes.
        mlp: maps ``9 C + 4`` inputs to the output dimension.
        chunk_size: query points per pass, summed over the batch (``None``: all at once). The
            fast path processes at most ``4 * chunk_size`` (query, neighbour) pairs per block.
        checkpoint: with autograd on, recompute each chunk in the backward pass instead of
            storing its activations (``torch.utils.checkpoint``): memory stays bounded by one
            chunk when training through full-image queries (stage 2), at one extra forward.
        fast: the fast path (first layer once per feature pixel, negligible terms skipped, see
            the module docstring) for an :class:`MLP`; ``False``: the per-query reference path.

    Shape:
        - coord, cell: ``(B, Q, 2)``.
        - Output: ``(B, Q, out_dim)``.
    """
    if fast and isinstance(mlp, MLP):
        block = FAST_BLOCK * max(1, torch.get_num_threads())
        block = block if chunk_size is None else max(1, min(block, 4 * chunk_size))
        return _fast_ensemble(field_, coord, cell, mlp, block=block, checkpoint=checkpoint)
    recompute = checkpoint and torch.is_grad_enabled()

    def run(c: Tensor, k: Tensor) -> Tensor:
        if recompute:
            return torch.utils.checkpoint.checkpoint(
                _local_ensemble_chunk, field_, c, k, mlp, use_reentrant=False
            )
        return _local_ensemble_chunk(field_, c, k, mlp)

    b, q = coord.shape[:2]
    if chunk_size is None or b * q <= chunk_size:
        return run(coord, cell)
    per_pass = max(1, chunk_size // b)
    outs = [
        run(coord[:, s : s + per_pass], cell[:, s : s + per_pass]) for s in range(0, q, per_pass)
    ]
    return torch.cat(outs, dim=1)


def _neighbours(field_: FeatureField, coord: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The four ensemble neighbours of each query: ``(i, j, centres, scale)``, no gradient.

    ``i``, ``j``: ``(4, ...)`` feature-pixel indices, clamped into the image (the border rule);
    ``centres``: their normalised centres ``(4, ..., 2)``; ``scale``: ``(h, w)``, LIIF's factor
    from normalised offsets to relative coordinates.
    """
    h, w = field_.size
    # LIIF measures offsets from the neighbours' centres in units of half a feature pixel.
    scale = torch.tensor([float(h), float(w)], device=coord.device, dtype=coord.dtype)
    with torch.no_grad():
        # The four neighbours: look half a pixel up/down and left/right of the query (LIIF's
        # vx, vy in {-1, 1} with radius 1/h in normalised units), then take the nearest pixel.
        signs = torch.tensor(
            [[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]],
            device=coord.device,
            dtype=coord.dtype,
        )
        shape = (4,) + (1,) * (coord.ndim - 1) + (2,)
        probe = coord.detach().unsqueeze(0) + (signs / scale).view(shape) + _EPS_SHIFT
        probe = probe.clamp(-1 + 1e-6, 1 - 1e-6)
        idx = torch.floor((probe + 1) * scale / 2).long()
        i = idx[..., 0].clamp_(0, h - 1)
        j = idx[..., 1].clamp_(0, w - 1)
        centres = torch.stack([field_.row_centres[i], field_.col_centres[j]], dim=-1)
    return i, j, centres, scale


def _ensemble_weights(rel_coord: Tensor) -> Tensor:
    """LIIF's blending weights ``(4, ...)`` from the relative coordinates ``(4, ..., 2)``."""
    area = (rel_coord[..., 0] * rel_coord[..., 1]).abs() + _AREA_EPS
    total = area.sum(dim=0)
    # LIIF's swap: neighbour k is weighted by the area of the diagonally opposite one (3 - k).
    return area.flip(0) / total


def _local_ensemble_chunk(
    field_: FeatureField, coord: Tensor, cell: Tensor, mlp: nn.Module
) -> Tensor:
    """The reference path on one chunk: the whole MLP per (query, neighbour) pair."""
    i, j, centres, scale = _neighbours(field_, coord)
    rel_coord = (coord.unsqueeze(0) - centres) * scale  # (4, B, q, 2)
    rel_cell = (cell * scale).unsqueeze(0).expand(4, -1, -1, -1)
    extra = torch.cat([rel_coord, rel_cell], dim=-1)
    if isinstance(mlp, MLP):
        q_feat = field_.unfolded_at(i, j, channel_major=False)  # (4, B, q, 9C)
        pred = mlp.forward_unfolded(q_feat, extra, field_.channels)  # (4, B, q, out)
    else:
        q_feat = field_.unfolded_at(i, j)
        pred = mlp(torch.cat([q_feat, extra], dim=-1))
    weights = _ensemble_weights(rel_coord)  # (4, B, q)
    return (pred * weights.unsqueeze(-1)).sum(dim=0)


# --------------------------------------------------------------------------------------------
# the fast path
# --------------------------------------------------------------------------------------------


def first_layer_projection(feat: Tensor, first: nn.Linear) -> Tensor:
    """The first layer's map of the 3×3-unfolded feature at every feature pixel, with its bias.

    ``first.weight[:, :9 C]`` is stored in ``F.unfold``'s channel-major order (``c * 9 + k``),
    which is exactly a ``(hidden, C, 3, 3)`` convolution kernel: ``W · unfold(F)[i, j] + b`` is
    ``conv2d(F, W, b, padding=1)[:, :, i, j]``. Computed channels last, so that the result is a
    table with one contiguous row per pixel.

    Shape:
        - feat: ``(B, C, h, w)``; output ``(B h w, hidden)`` (row ``(b h + i) w + j``).
    """
    c = feat.shape[1]
    hidden = first.out_features
    kernel = first.weight[:, : 9 * c].reshape(hidden, c, 3, 3)
    feat = feat.contiguous(memory_format=torch.channels_last)
    out = F.conv2d(feat, kernel, first.bias, padding=1)
    # channels last: the permuted view is contiguous and the reshape free
    return out.permute(0, 2, 3, 1).reshape(-1, hidden)


class _Buffers:
    """Reused activation buffers of the fast path (no autograd): flat storage viewed as needed."""

    def __init__(self, like: Tensor) -> None:
        self.like = like
        self.store: dict[str, Tensor] = {}

    def get(self, name: str, rows: int, cols: int) -> Tensor:
        n = rows * cols
        buf = self.store.get(name)
        if buf is None or buf.numel() < n:
            buf = torch.empty(n, dtype=self.like.dtype, device=self.like.device)
            self.store[name] = buf
        return buf[:n].view(rows, cols)


def _linears(mlp: MLP) -> list[nn.Linear]:
    return [m for m in mlp.layers if isinstance(m, nn.Linear)]


def _fast_ensemble(
    field_: FeatureField,
    coord: Tensor,
    cell: Tensor,
    mlp: MLP,
    *,
    block: int,
    checkpoint: bool,
) -> Tensor:
    """The fast path of :func:`local_ensemble` (same arguments, same result)."""
    linears = _linears(mlp)
    hidden = linears[0].out_features
    b = coord.shape[0]
    h, w = field_.size
    group = max(1, min(b, PROJECTION_BUDGET // max(1, h * w * hidden)))
    # Reused buffers need fixed dtypes: not under autocast, whose ops pick their own.
    reuse = not torch.is_grad_enabled() and not torch.is_autocast_enabled(coord.device.type)
    buffers = _Buffers(field_.feat) if reuse else None
    outs = [
        _fast_group(
            field_,
            g0,
            coord[g0 : g0 + group],
            cell[g0 : g0 + group],
            linears,
            block=block,
            checkpoint=checkpoint,
            buffers=buffers,
        )
        for g0 in range(0, b, group)
    ]
    return outs[0] if len(outs) == 1 else torch.cat(outs)


def _fast_group(
    field_: FeatureField,
    g0: int,
    coord: Tensor,
    cell: Tensor,
    linears: list[nn.Linear],
    *,
    block: int,
    checkpoint: bool,
    buffers: _Buffers | None,
) -> Tensor:
    """The fast path on images ``g0 .. g0 + gb`` of the batch (``coord``, ``cell``: theirs)."""
    gb, q = coord.shape[:2]
    h, w = field_.size
    first = linears[0]
    n_feat = 9 * field_.channels
    i, j, centres, scale = _neighbours(field_, coord)  # (4, gb, q)
    rel_coord = (coord.unsqueeze(0) - centres) * scale  # (4, gb, q, 2)
    weights = _ensemble_weights(rel_coord).reshape(-1)  # pairs in (k, image, query) order
    rel_cell = (cell * scale).unsqueeze(0).expand(4, -1, -1, -1)
    extra = torch.cat([rel_coord, rel_cell], dim=-1).reshape(-1, 4)
    image = torch.arange(gb, device=coord.device).view(1, gb, 1).expand_as(i).reshape(-1)
    i, j = i.reshape(-1), j.reshape(-1)
    keep = None
    if not (torch.is_grad_enabled() and coord.requires_grad):
        # The weights carry no gradient: terms with a negligible weight can be skipped. (With a
        # gradient they cannot: a tiny area |a b| can have a large derivative.)
        mask = weights.detach() >= SKIP_WEIGHT
        if not bool(mask.all()):
            keep = mask.nonzero().squeeze(1)
            weights, extra = weights[keep], extra[keep]
            image, i, j = image[keep], i[keep], j[keep]
    n_pairs = int(weights.numel())
    w_extra = first.weight[:, n_feat:]
    if n_pairs >= gb * h * w:
        # At least one pair per pixel: the first layer once per pixel (a convolution), gathered.
        feat = field_.feat[g0 : g0 + gb]
        source = first_layer_projection(feat, first)
        index = (image * h + i) * w + j
        w_feat = None
    else:
        # Sparse queries (e.g. stage 1's random pixels): the first layer on the pairs only.
        source = field_.padded
        index = torch.stack([image + g0, i, j])  # (3, n_pairs)
        c = field_.channels
        w_feat = first.weight[:, :n_feat].reshape(-1, c, 9).transpose(1, 2).reshape(-1, n_feat)
    out_dim = linears[-1].out_features
    if buffers is not None:
        weighted = buffers.get("weighted", n_pairs, out_dim)
        for s in range(0, n_pairs, block):
            e = min(n_pairs, s + block)
            _block_inplace(
                field_, source, index[..., s:e], extra[s:e], weights[s:e], linears, w_feat,
                w_extra, buffers, weighted[s:e],
            )  # fmt: skip
    else:
        weighted = _blocks_autograd(
            field_, source, index, extra, weights, linears, w_feat, w_extra, block, checkpoint
        )
    if keep is None:
        out = weighted.view(4, gb * q, out_dim).sum(dim=0)
    else:
        query = keep % (gb * q)  # pairs are in (k, image, query) order
        out = weighted.new_zeros(gb * q, out_dim).index_add_(0, query, weighted)
    return out.view(gb, q, out_dim)


def _blocks_autograd(
    field_: FeatureField,
    source: Tensor,
    index: Tensor,
    extra: Tensor,
    weights: Tensor,
    linears: list[nn.Linear],
    w_feat: Tensor | None,
    w_extra: Tensor,
    block: int,
    checkpoint: bool,
) -> Tensor:
    """Weighted predictions of all pairs, block by block, recorded by autograd.

    Inputs that need a gradient are cut into blocks with ``split`` (one backward node that
    concatenates the blocks' gradients) rather than sliced or gathered per block, whose
    backward would allocate and accumulate a gradient of the whole tensor for every block.
    """
    n_pairs = int(weights.numel())
    bounds = [min(block, n_pairs - s) for s in range(0, n_pairs, block)]
    table_grad = source.requires_grad if w_feat is None else field_.padded.requires_grad
    if table_grad:  # gather every pair's first-layer input once: one index_add in backward
        if w_feat is None:
            gathered = source.index_select(0, index)
        else:
            gathered = field_.unfolded_rows(index[0], index[1], index[2])
        pre: Sequence[Tensor | None] = gathered.split(bounds)
    else:
        pre = [None] * len(bounds)
    parts = []
    for pre_k, index_k, extra_k, weights_k in zip(
        pre, index.split(bounds, dim=-1), extra.split(bounds), weights.split(bounds), strict=True
    ):
        args = (field_, source, index_k, pre_k, extra_k, weights_k, linears, w_feat, w_extra)
        if checkpoint:
            parts.append(torch.utils.checkpoint.checkpoint(_block, *args, use_reentrant=False))
        else:
            parts.append(_block(*args))
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def _block(
    field_: FeatureField,
    source: Tensor,
    index: Tensor,
    pre: Tensor | None,
    extra: Tensor,
    weights: Tensor,
    linears: list[nn.Linear],
    w_feat: Tensor | None,
    w_extra: Tensor,
) -> Tensor:
    """Weighted predictions of one block of pairs, recorded by autograd (``pre``: the block's
    gathered first-layer input, or ``None`` to gather it here)."""
    first = linears[0]
    if w_feat is None:  # gather the per-pixel projections
        h = pre if pre is not None else source.index_select(0, index)
        h = torch.addmm(h, extra, w_extra.t())
    else:  # the first layer on the gathered unfolded features
        if pre is None:
            pre = field_.unfolded_rows(index[0], index[1], index[2])
        # out of place: autocast (bfloat16) does not cover in-place addmm_
        h = torch.addmm(torch.addmm(first.bias, pre, w_feat.t()), extra, w_extra.t())
    h = h.relu_()  # in place: addmm's backward needs its inputs only
    for lin in linears[1:-1]:
        h = F.linear(h, lin.weight, lin.bias).relu_()
    last = linears[-1]
    return F.linear(h, last.weight, last.bias) * weights.unsqueeze(-1)


def _block_inplace(
    field_: FeatureField,
    source: Tensor,
    index: Tensor,
    extra: Tensor,
    weights: Tensor,
    linears: list[nn.Linear],
    w_feat: Tensor | None,
    w_extra: Tensor,
    buffers: _Buffers,
    out: Tensor,
) -> None:
    """:func:`_block_autograd` without autograd, through reused buffers, into ``out``."""
    n = int(weights.numel())
    first = linears[0]
    h = buffers.get("a", n, first.out_features)
    if w_feat is None:
        torch.index_select(source, 0, index, out=h)
        h.addmm_(extra, w_extra.t())
    else:
        unfolded = field_.unfolded_rows(
            index[0], index[1], index[2], out=buffers.get("unfold", 9 * n, field_.channels)
        )
        torch.addmm(first.bias, unfolded, w_feat.t(), out=h).addmm_(extra, w_extra.t())
    h.relu_()
    names = ("b", "a")
    for k, lin in enumerate(linears[1:-1]):
        nxt = buffers.get(names[k % 2], n, lin.out_features)
        torch.addmm(lin.bias, h, lin.weight.t(), out=nxt).relu_()
        h = nxt
    last = linears[-1]
    torch.addmm(last.bias, h, last.weight.t(), out=out).mul_(weights.unsqueeze(-1))


# --------------------------------------------------------------------------------------------
# the implicit representation
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImplicitConfig:
    """Sizes of the implicit representation (encoder FEAT and decoder φ).

    Args:
        encoder: EDSR sizes.
        decoder_hidden: hidden widths of the decoder MLP (paper preset ``(256,) * 4``, i.e. a
            five-layer MLP).
        skip: ``"none"`` (LIIF and the paper: the decoder predicts the colour) or
            ``"bilinear"`` (the decoder predicts a correction added to the input bilinearly
            sampled at the same coordinate, as in LTE, Lee & Jin 2022). The skip starts
            training at the input's own PSNR instead of from noise, which is what makes a
            short CPU schedule reach a denoiser at all (``docs/implicit.md``).
    """

    encoder: EDSRConfig = field(default_factory=EDSRConfig)
    decoder_hidden: tuple[int, ...] = (256, 256, 256, 256)
    skip: str = "none"

    def __post_init__(self) -> None:
        if any(int(h) < 1 for h in self.decoder_hidden):
            raise ConfigError(f"decoder_hidden must be positive widths, got {self.decoder_hidden}")
        object.__setattr__(self, "decoder_hidden", tuple(int(h) for h in self.decoder_hidden))
        if self.skip not in SKIPS:
            raise ConfigError(f"skip must be one of {SKIPS}, got {self.skip!r}")

    @property
    def mlp_in_dim(self) -> int:
        """``9 C`` unfolded features + 2 relative coordinates + 2 cell sizes."""
        return 9 * self.encoder.n_feats + 4

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "encoder": self.encoder.to_dict(),
            "decoder_hidden": list(self.decoder_hidden),
        }
        if self.skip != "none":  # absent in older configs, which had no skip
            d["skip"] = self.skip
        return d

    @classmethod
    def from_dict(cls, d: Any, *, where: str = "representation") -> ImplicitConfig:
        """The inverse of :meth:`to_dict`, naming the field (``where.name``) that is wrong."""
        return cls(
            encoder=EDSRConfig.from_dict(
                config_field(d, "encoder", dict, where=where), where=f"{where}.encoder"
            ),
            decoder_hidden=tuple(config_field(d, "decoder_hidden", list, items=int, where=where)),
            skip=config_field(d, "skip", str, default="none", where=where),
        )


class ImplicitRepresentation(nn.Module):
    """FEAT + φ: an image in [0, 1] -> a function of continuous coordinates (Sec. 4.2).

    The encoder sees ``(x - 0.5) / 0.5``; the decoder's output ``o`` is mapped back with
    ``o * 0.5 + 0.5`` and clamped to [0, 1] (pass ``clamp=False`` to train with an L1 loss that
    still has gradients outside the range).

    Shape:
        - Input of :meth:`forward`: ``(B, 3, H, W)`` in [0, 1].
        - Output: ``(B, 3, H', W')`` (``size`` or the input size).

    Example:
        >>> rep = ImplicitRepresentation(ImplicitConfig(EDSRConfig(2, 8), (16, 16)))
        >>> x = torch.rand(2, 3, 6, 5)
        >>> rep(x).shape, rep(x, size=(12, 10)).shape
        (torch.Size([2, 3, 6, 5]), torch.Size([2, 3, 12, 10]))
    """

    def __init__(self, config: ImplicitConfig | None = None) -> None:
        super().__init__()
        self.config = config or ImplicitConfig()
        self.encoder = EDSR(self.config.encoder)
        self.imnet = MLP(self.config.mlp_in_dim, 3, self.config.decoder_hidden)

    def encode(self, x: Tensor, *, fast: bool = True) -> Tensor:
        """Features ``(B, C, H, W)`` of images ``x`` in [0, 1] (``fast``: see :class:`EDSR`)."""
        return self.encoder((x - 0.5) / 0.5, fast=fast)

    def field(self, x: Tensor, *, fast: bool = True) -> FeatureField:
        """Everything a query needs from images ``x`` in [0, 1]: the features, and the image
        itself when the decoder has a bilinear skip. ``fast``: the encoder's fast forward
        (channels last, in place; :class:`~irad.models.edsr.EDSR`) or the reference one."""
        image = (x - 0.5) / 0.5
        feat = self.encoder(image, fast=fast)
        return FeatureField(feat, image=image if self.config.skip != "none" else None)

    def _as_field(self, feat: Tensor | FeatureField) -> FeatureField:
        if isinstance(feat, FeatureField):
            return feat
        if self.config.skip != "none":
            raise InputError(
                "this implicit representation adds a bilinear skip from the input image; "
                "query it with rep.field(x) rather than rep.encode(x)"
            )
        return FeatureField(feat)

    def query_normalized(
        self,
        field_: FeatureField,
        coord: Tensor,
        cell: Tensor,
        *,
        chunk_size: int | None = DEFAULT_CHUNK_SIZE,
        checkpoint: bool = False,
        fast: bool = True,
    ) -> Tensor:
        """Raw decoder output (LIIF's scale, about [-1, 1]) at normalised coordinates.

        ``fast``: the fast path (default) or the per-query reference path (module docstring).

        Shape:
            - coord, cell: ``(B, Q, 2)``; output ``(B, Q, 3)``.
        """
        out = local_ensemble(
            field_,
            coord,
            cell,
            self.imnet,
            chunk_size=chunk_size,
            checkpoint=checkpoint,
            fast=fast,
        )
        if self.config.skip == "none":
            return out
        if field_.image is None:
            raise InputError(
                "this implicit representation adds a bilinear skip from the input image; "
                "build the FeatureField with rep.field(x)"
            )
        return out + bilinear_at(field_.image, coord)

    def query(
        self,
        feat: Tensor | FeatureField,
        coords: Tensor,
        cells: Tensor | None = None,
        *,
        chunk_size: int | None = DEFAULT_CHUNK_SIZE,
        clamp: bool = True,
        fast: bool = True,
    ) -> Tensor:
        """Colours in [0, 1] at pixel-unit coordinates (centre of pixel ``[i, j]`` at ``(i, j)``).

        Args:
            feat: features from :meth:`encode` (or a prepared :class:`FeatureField`).
            coords: ``(B, Q, 2)`` or ``(Q, 2)`` (row, col) in input pixels; any real values.
            cells: output-pixel sizes in input pixels, ``(B, Q, 2)``, ``(2,)`` or ``None`` (= 1).
            chunk_size: query points per pass, summed over the batch (``None``: all at once).
            clamp: clamp to [0, 1] (``False`` keeps gradients for training).
            fast: the fast path (default) or the per-query reference path.

        Shape:
            - Output: ``(B, Q, 3)``.
        """
        field_ = self._as_field(feat)
        b = field_.feat.shape[0]
        coords = _check_queries(coords, b, "coords")
        size = field_.size
        if cells is None:
            cells = torch.ones(2, device=coords.device, dtype=coords.dtype)
        cells = torch.as_tensor(cells, device=coords.device, dtype=coords.dtype)
        cells = cells.expand(b, coords.shape[1], 2) if cells.ndim < 3 else cells
        out = self.query_normalized(
            field_,
            liif_normalize(coords, size),
            length_to_normalized(cells, size),
            chunk_size=chunk_size,
            fast=fast,
        )
        out = out * 0.5 + 0.5
        return out.clamp(0.0, 1.0) if clamp else out

    def render(
        self,
        feat: Tensor | FeatureField,
        size: Sequence[int] | None = None,
        *,
        chunk_size: int | None = DEFAULT_CHUNK_SIZE,
        clamp: bool = True,
        fast: bool = True,
    ) -> Tensor:
        """The image on the pixel-centre grid of ``size`` (default: the input's size).

        Shape:
            - Output: ``(B, 3, H', W')``.
        """
        field_ = self._as_field(feat)
        b = field_.feat.shape[0]
        in_size = field_.size
        out_size = tuple(size) if size is not None else in_size
        coord = make_coord(out_size, device=field_.feat.device, dtype=field_.feat.dtype)
        cell = normalized_cell(out_size, device=coord.device, dtype=coord.dtype)
        coord = coord.view(1, -1, 2).expand(b, -1, -1)
        out = self.query_normalized(
            field_, coord, cell.expand_as(coord), chunk_size=chunk_size, fast=fast
        )
        out = out * 0.5 + 0.5
        out = out.clamp(0.0, 1.0) if clamp else out
        return out.view(b, out_size[0], out_size[1], 3).permute(0, 3, 1, 2)

    def forward(
        self,
        x: Tensor,
        size: Sequence[int] | None = None,
        *,
        chunk_size: int | None = DEFAULT_CHUNK_SIZE,
        fast: bool = True,
    ) -> Tensor:
        return self.render(self.field(x, fast=fast), size, chunk_size=chunk_size, fast=fast)


# --------------------------------------------------------------------------------------------
# SampleNet lives in irad.models.samplenet; it reuses FeatureField and local_ensemble.
# --------------------------------------------------------------------------------------------

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "FAST_BLOCK",
    "MLP",
    "PROJECTION_BUDGET",
    "SKIPS",
    "SKIP_WEIGHT",
    "FeatureField",
    "ImplicitConfig",
    "ImplicitRepresentation",
    "bilinear_at",
    "first_layer_projection",
    "local_ensemble",
]
