"""IRAD (``irad``): implicit representation + SampleNet resampling (Sec. 4, Eq. 9-10).

The encoder runs once per image, SampleNet predicts a shift per output pixel, and the decoder
is queried at ``U = G + SAMPLENET(F, G)``. Deterministic and differentiable
(``stochastic = False``, ``differentiable = True``): an adaptive attacker differentiates
through it directly. Checkpoints: see :class:`~irad.defenses.reconstruction.ImplicitDefense`.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import torch
from torch import Tensor

from irad.checkpoint import config_field
from irad.defenses.reconstruction import ImplicitDefense, ImplicitReconstruction, read_chunk_size
from irad.errors import ConfigError
from irad.models.edsr import EDSRConfig
from irad.models.implicit_presets import ImplicitPreset, get_preset
from irad.models.liif import FeatureField, ImplicitConfig, ImplicitRepresentation
from irad.models.samplenet import SampleNet, SampleNetConfig
from irad.resample.coordinates import (
    length_to_normalized,
    length_to_pixel,
    make_coord,
    make_grid,
    normalized_cell,
    normalized_to_pixel,
)
from irad.resample.reconstruction import reconstruct


class IRAD(ImplicitDefense):
    """IRAD: implicit representation + SampleNet resampling (Sec. 4, Eq. 9-10).

    For an image ``x``: ``F = FEAT(x)`` (once); ``s = SAMPLENET(F, G)`` on the pixel-centre grid
    ``G``; output = the implicit representation queried at ``U = G + s``. SampleNet reads the
    same features as the decoder (``shared_encoder=True``) or its own encoder copy (the official
    release's layout, :meth:`SampleNetConfig.official`).

    Args:
        representation: trained implicit representation (default: fresh, ``preset`` sizes).
        samplenet: SampleNet (default: fresh, zero-initialised output: the shift is exactly 0,
            so the output equals :class:`ImplicitReconstruction`'s).
        preset: preset name or object for fresh parts; recorded in checkpoints.
        samplenet_config: settings of a fresh SampleNet (default: the preset's, shared encoder,
            shifts in pixels).
        chunk_size: query points per pass, summed over the batch.
        fast: the fast path (default: each MLP's first layer once per feature pixel, SampleNet's
            negligible grid terms skipped) or the per-query reference path, which is the
            official code's algorithm; the same output up to float rounding
            (:mod:`irad.models.liif`).
        precision: ``"float32"`` (default) or ``"bfloat16"`` (autocast in :meth:`purify`:
            faster on CPUs with AMX, outputs within about 1e-2; training stays float32).

    Shape:
        - Input: ``(B, 3, H, W)`` in [0, 1], any ``H``, ``W``.
        - Output: ``(B, 3, H, W)`` in [0, 1].

    Example:
        >>> irad = IRAD(preset="cpu")  # untrained; use IRAD.from_pretrained(...)
        >>> irad(torch.rand(1, 3, 8, 8)).shape
        torch.Size([1, 3, 8, 8])
    """

    registry_name = "irad"
    checkpoint_kind = "irad"

    def __init__(
        self,
        representation: ImplicitRepresentation | None = None,
        samplenet: SampleNet | None = None,
        *,
        preset: str | ImplicitPreset | None = "cpu",
        samplenet_config: SampleNetConfig | None = None,
        chunk_size: int | None = None,
        fast: bool = True,
        precision: str = "float32",
    ) -> None:
        p = get_preset(preset) if preset is not None else None
        super().__init__(representation, preset, p, chunk_size, fast, precision)
        representation = self.representation
        if samplenet is None:
            if samplenet_config is None:
                samplenet_config = p.samplenet_config() if p is not None else SampleNetConfig()
            samplenet = SampleNet(
                representation.config.encoder.n_feats,
                samplenet_config,
                encoder=representation.config.encoder,
            )
            if not samplenet_config.shared_encoder:
                # The official release starts SampleNet's encoder as a copy of the trained one.
                samplenet.encoder.load_state_dict(representation.encoder.state_dict())
        if samplenet.feat_dim != representation.config.encoder.n_feats:
            raise ConfigError(
                f"SampleNet reads {samplenet.feat_dim} feature channels but the representation's "
                f"encoder has {representation.config.encoder.n_feats}"
            )
        self.samplenet = samplenet

    @classmethod
    def from_representation(
        cls,
        representation: ImplicitRepresentation | ImplicitReconstruction | str | os.PathLike[str],
        *,
        preset: str | ImplicitPreset | None = None,
        samplenet_config: SampleNetConfig | None = None,
        chunk_size: int | None = None,
    ) -> IRAD:
        """IRAD with a trained representation and a fresh (zero-shift) SampleNet: stage 2's start.

        ``representation`` may be a module, a reconstruction defense, or a checkpoint spec.
        """
        if isinstance(representation, (str, os.PathLike)):
            representation = ImplicitReconstruction.from_pretrained(representation)
        name = None
        if isinstance(representation, ImplicitReconstruction):
            name = representation.preset
            chunk_size = chunk_size or representation.chunk_size
            representation = representation.representation
        p = get_preset(preset) if preset is not None else None
        if samplenet_config is None:
            if p is None and name in ("cpu", "paper"):
                p = get_preset(name)
            samplenet_config = p.samplenet_config() if p is not None else SampleNetConfig()
        out = cls(
            representation,
            preset=None,
            samplenet_config=samplenet_config,
            chunk_size=chunk_size,
        )
        out.preset = p.name if p is not None else (name or "custom")
        return out

    @property
    def samplenet_config(self) -> SampleNetConfig:
        return self.samplenet.config

    def config(self) -> dict[str, Any]:
        out = super().config()
        if self.samplenet.config.render != "implicit":
            out["render"] = self.samplenet.config.render
        return out

    def _features(self, x: Tensor) -> tuple[FeatureField, FeatureField]:
        if self.samplenet.config.shared_encoder:
            field_ = self.representation.field(x, fast=self.fast)
            return field_, field_
        # The official layout: SampleNet's own encoder copy, fed x in [0, 1] while the
        # representation's sees (x - 0.5) / 0.5, so the two passes cannot be shared.
        if self.fast and torch.get_num_threads() > 1 and self._identical_encoders():
            return self._batched_features(x)
        field_ = self.representation.field(x, fast=self.fast)
        return field_, FeatureField(self.samplenet.encode(x, fast=self.fast))

    def _batched_features(self, x: Tensor) -> tuple[FeatureField, FeatureField]:
        """Both encoder passes as one call of twice the batch (same weights, same values).

        Half the parallel regions of two calls, which is what costs time when the threads
        share busy cores (measured: 1.6x faster encoders at 2 threads next to a training job;
        on one thread two calls are about 10 % faster, so this is used with several threads).
        """
        rep = self.representation
        image = (x - 0.5) / 0.5
        both = rep.encoder(torch.cat([image, self.samplenet.encoder_input(x)]), fast=True)
        feat, feat_s = both.split(x.shape[0])
        # what rep.field(x) builds: the image rides along for a decoder with a bilinear skip
        field_ = FeatureField(feat, image=image if rep.config.skip != "none" else None)
        return field_, FeatureField(feat_s)

    def _identical_encoders(self) -> bool:
        """Whether SampleNet's encoder holds the representation's weights (the release's frozen
        copy); cached on the parameters' storage and version counters."""
        mine = list(self.representation.encoder.parameters())
        theirs = list(self.samplenet.encoder.parameters())
        if len(mine) != len(theirs):
            return False
        pairs = list(zip(mine, theirs, strict=True))
        key = tuple((a.data_ptr(), a._version, b.data_ptr(), b._version) for a, b in pairs)
        cached = getattr(self, "_identical_key", None)
        if cached is None or cached[0] != key:
            same = all(a.shape == b.shape and torch.equal(a, b) for a, b in pairs)
            self._identical_key = (key, same)
        return self._identical_key[1]

    def _grid(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """LIIF's normalised pixel-centre grid and cell, ``(B, H W, 2)`` each."""
        b, _, h, w = x.shape
        grid = make_coord((h, w), device=x.device, dtype=x.dtype).view(1, -1, 2).expand(b, -1, -1)
        cell = normalized_cell((h, w), device=x.device, dtype=x.dtype).expand_as(grid)
        return grid, cell

    def _shift_normalized(
        self, field_s: FeatureField, grid: Tensor, cell: Tensor, checkpoint: bool = False
    ) -> Tensor:
        raw = self.samplenet(
            field_s, grid, cell, chunk_size=self.chunk_size, checkpoint=checkpoint, fast=self.fast
        )
        if self.samplenet.config.shift_units == "normalized":
            return raw
        return length_to_normalized(raw, field_s.size)

    def sample_points(self, x: Tensor) -> Tensor:
        """The sampling coordinates ``U = G + s`` in pixel units (``G[i, j] = (i, j)``).

        Shape:
            - Output: ``(B, H, W, 2)`` (row, col).
        """
        _, _, h, w = x.shape
        return make_grid(h, w, device=x.device, dtype=x.dtype) + self.shifts(x)

    def shifts(self, x: Tensor) -> Tensor:
        """SampleNet's shift ``s`` per output pixel, in input pixels ``(d_row, d_col)``.

        Shape:
            - Output: ``(B, H, W, 2)``.
        """
        _, field_s = self._features(x)
        grid, cell = self._grid(x)
        b, _, h, w = x.shape
        raw = self.samplenet(field_s, grid, cell, chunk_size=self.chunk_size, fast=self.fast)
        if self.samplenet.config.shift_units == "normalized":
            raw = length_to_pixel(raw, (h, w))
        return raw.view(b, h, w, 2)

    def resample(
        self, x: Tensor, *, frozen_representation: bool = False, checkpoint: bool = False
    ) -> Tensor:
        """IRAD's output (what :meth:`purify` returns), with two switches for stage-2 training.

        Args:
            x: images in [0, 1] (not checked here; ``forward`` checks them).
            frozen_representation: compute the encoder features without autograd (they are
                frozen in stage 2; the gradient still reaches SampleNet through the decoder's
                dependence on the sampling coordinates).
            checkpoint: recompute the decoder and SampleNet per chunk in the backward pass
                (bounded memory for full-image training batches).

        Shape:
            - x: ``(B, 3, H, W)``; output ``(B, 3, H, W)`` in [0, 1].
        """
        b, _, h, w = x.shape
        with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen_representation):
            field_, field_s = self._features(x)
        grid, cell = self._grid(x)
        u = grid + self._shift_normalized(field_s, grid, cell, checkpoint)
        render = self.samplenet.config.render
        if render != "implicit":  # Table 15: a naive reconstruction of x at the same points
            return reconstruct(x, normalized_to_pixel(u.view(b, h, w, 2), (h, w)), render)
        out = self.representation.query_normalized(
            field_, u, cell, chunk_size=self.chunk_size, checkpoint=checkpoint, fast=self.fast
        )
        out = (out * 0.5 + 0.5).clamp(0.0, 1.0)
        return out.view(b, h, w, 3).permute(0, 3, 1, 2)

    def purify(self, x: Tensor) -> Tensor:
        with self.autocast(x):
            return self.resample(x).to(x.dtype)

    def reconstruction(self) -> ImplicitReconstruction:
        """The same representation without SampleNet (Table 8's "w.o. Sampling")."""
        out = ImplicitReconstruction(
            self.representation,
            preset=None,
            chunk_size=self.chunk_size,
            fast=self.fast,
            precision=self.precision,
        )
        out.preset, out.source = self.preset, self.source
        return out

    # -- checkpoints -----------------------------------------------------------------------

    def checkpoint_config(self) -> dict[str, Any]:
        """The sizes that rebuild it (the ``config`` of its checkpoint's JSON)."""
        enc = self.samplenet.encoder.config.to_dict() if self.samplenet.has_encoder else None
        return {
            "preset": self.preset,
            "representation": self.representation.config.to_dict(),
            "samplenet": self.samplenet.config.to_dict(),
            "samplenet_encoder": enc,
            "chunk_size": self.chunk_size,
        }

    @classmethod
    def from_checkpoint_config(cls, config: dict[str, Any]) -> IRAD:
        rep = ImplicitRepresentation(
            ImplicitConfig.from_dict(config_field(config, "representation", dict))
        )
        enc = config_field(config, "samplenet_encoder", (dict, type(None)), default=None)
        sn = SampleNet(
            rep.config.encoder.n_feats,
            SampleNetConfig.from_dict(config_field(config, "samplenet", dict)),
            encoder=EDSRConfig.from_dict(enc, where="samplenet_encoder") if enc else None,
        )
        out = cls(rep, sn, preset=None, chunk_size=read_chunk_size(config))
        out.preset = config_field(config, "preset", str, default="custom")
        return out


def build_irad(
    checkpoint: str | None = "cifar10",
    preset: str | None = None,
    chunk_size: int | None = None,
    render: str | None = None,
    fast: bool = True,
    precision: str = "float32",
) -> IRAD:
    """``irad`` by name: load ``checkpoint`` (``None``: an untrained model, zero shift).

    ``render`` overrides how the shifted points are rendered (``"implicit"``, ``"bilinear"``,
    ``"nearest"``; Table 15), keeping the checkpoint's SampleNet. ``fast=False`` selects the
    per-query reference path (the official code's algorithm; same output up to rounding),
    ``precision="bfloat16"`` bfloat16 autocast.
    """
    if checkpoint is None:
        out = IRAD(preset=preset or "cpu", chunk_size=chunk_size)
    else:
        out = IRAD.from_pretrained(checkpoint, preset=preset, chunk_size=chunk_size)
    if render is not None:
        out.samplenet.config = dataclasses.replace(out.samplenet.config, render=render)
    out.fast = bool(fast)
    out.precision = precision
    return out


__all__ = ["IRAD", "build_irad"]
