"""Defenses built on the implicit representation: the DISCO-style reconstruction and IRAD.

* :class:`ImplicitReconstruction` (``recons``, alias ``disco``): the implicit representation
  queried at the unshifted pixel-centre grid, ``RECONS(x)`` -- the "w.o. Sampling" row of
  Table 8 and the DISCO row of Table 2 (Ho & Vasconcelos 2022 use the same LIIF design).
* :class:`IRAD` (``irad``): encoder once per image, SampleNet's shift, decoder at
  ``U = G + SAMPLENET(F, G)`` (Eq. 10).

Both are deterministic and differentiable (``stochastic = False``, ``differentiable = True``):
an adaptive attacker can differentiate through them directly.

Checkpoints (``save_pretrained`` / ``from_pretrained``) are one ``.safetensors`` file plus a JSON
config naming the format, the preset and every size, so they load with one call and no trainer
code. ``save_pretrained(dir)`` writes ``dir/model.{safetensors,json}``; ``from_pretrained``
accepts that folder, a ``prefix`` / ``prefix.safetensors`` path (e.g. a training run's
``runs/x/model``), or the name of weights bundled in the package (``"cifar10"``).
An :class:`ImplicitReconstruction` also loads from an IRAD checkpoint (it takes the
representation and leaves SampleNet out).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, ClassVar, Self

import torch
from torch import Tensor, nn

from irad.defenses.base import Defense
from irad.errors import CheckpointError, ConfigError
from irad.models.edsr import EDSRConfig
from irad.models.implicit_presets import ImplicitPreset, get_preset
from irad.models.liif import (
    DEFAULT_CHUNK_SIZE,
    FeatureField,
    ImplicitConfig,
    ImplicitRepresentation,
    make_coord,
)
from irad.models.samplenet import SampleNet, SampleNetConfig
from irad.resample.coordinates import make_grid, normalized_to_pixel
from irad.resample.reconstruction import reconstruct
from irad.resample.samplers import Sampler, build_sampler
from irad.utils.checkpoint import (
    bundled_checkpoint,
    bundled_weights_dir,
    checkpoint_paths,
    load_into,
    load_state,
    save_state,
)

FORMAT_REPRESENTATION = "irad.implicit-representation"
FORMAT_IRAD = "irad.irad"
FORMAT_VERSION = 1
#: File stem that ``save_pretrained(dir)`` writes inside ``dir``.
CHECKPOINT_STEM = "model"


# --------------------------------------------------------------------------------------------
# checkpoint paths and configs
# --------------------------------------------------------------------------------------------


def resolve_checkpoint(spec: str | os.PathLike[str], bundled_prefixes: tuple[str, ...]) -> Path:
    """Turn a folder, a prefix, a ``.safetensors``/``.json`` path or a bundled name into a prefix.

    Raises:
        CheckpointError: nothing matches; the message lists every place that was tried.
    """
    p = Path(spec)
    tried: list[str] = []
    candidates = []
    if p.is_dir():
        candidates.append(p / CHECKPOINT_STEM)
    candidates.append(p)
    for c in candidates:
        weights, _ = checkpoint_paths(c)
        tried.append(str(weights))
        if weights.is_file():
            return weights.with_suffix("")
    is_name = os.sep not in str(spec) and "/" not in str(spec)
    for kind in bundled_prefixes if is_name else ():
        bundled = bundled_checkpoint(kind, str(spec))
        if bundled is not None:
            return bundled
        tried.append(f"bundled {kind}-{spec}.safetensors")
    raise CheckpointError(
        f"no checkpoint found for {str(spec)!r}; tried: {', '.join(tried)} (pass a folder written "
        "by save_pretrained, a training run's model prefix such as runs/inr/model, or a bundled "
        "name)"
    )


def _check_format(config: dict[str, Any], allowed: tuple[str, ...], source: str) -> str:
    fmt = config.get("format")
    if fmt not in allowed:
        hint = ""
        if fmt == FORMAT_REPRESENTATION:
            hint = (
                " (an implicit representation without SampleNet: load it with "
                "ImplicitReconstruction.from_pretrained, or start IRAD from it with "
                "IRAD.from_representation)"
            )
        raise CheckpointError(
            f"checkpoint {source} has format {fmt!r}, expected one of {list(allowed)}{hint}"
        )
    version = config.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {source} has format version {version!r}; this irad reads version "
            f"{FORMAT_VERSION} (upgrade irad, or re-save the checkpoint)"
        )
    return str(fmt)


def _check_preset(config: dict[str, Any], preset: str | ImplicitPreset | None, source: str) -> None:
    if preset is None:
        return
    wanted = preset.name if isinstance(preset, ImplicitPreset) else str(preset)
    saved = config.get("preset")
    if saved != wanted:
        raise CheckpointError(
            f"checkpoint {source} was saved with preset {saved!r}, but preset {wanted!r} was "
            "requested (drop the preset argument to load it with its own sizes)"
        )


def _split(tensors: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def _load_module(
    module: nn.Module,
    tensors: dict[str, Tensor],
    source: str,
    own_preset: str,
    saved: Any,
    owner: str,
) -> None:
    try:
        load_into(module, tensors, source)
    except CheckpointError as err:
        if saved is not None and saved != own_preset:
            raise CheckpointError(
                f"checkpoint {source} holds preset {saved!r} weights but this model has preset "
                f"{own_preset!r}; load it with {owner}.from_pretrained, which "
                f"builds the checkpoint's own sizes. Details: {err}"
            ) from err
        raise


def _preset_name(preset: str | ImplicitPreset | None) -> str:
    if preset is None:
        return "custom"
    return preset.name if isinstance(preset, ImplicitPreset) else str(preset)


def _representation_from(config: dict[str, Any]) -> ImplicitRepresentation:
    """A fresh representation with the sizes a checkpoint's JSON config records."""
    return ImplicitRepresentation(ImplicitConfig.from_dict(config["representation"]))


# --------------------------------------------------------------------------------------------
# what both defenses share: sizes, config() and checkpoints
# --------------------------------------------------------------------------------------------


class _ImplicitDefense(Defense):
    """Base of both defenses: the representation, preset and chunk size, and their checkpoints.

    A subclass names its registry entry, the checkpoint formats and bundled-weight prefixes it
    reads, and says which module the checkpoint's tensors belong to (:meth:`_weights`), what its
    JSON config holds (:meth:`checkpoint_config`) and how to build a model of a config's sizes
    (:meth:`_from_config`). ``save`` / ``save_pretrained`` / ``from_pretrained`` /
    ``load_weights`` are then the same for both.
    """

    stochastic = False
    differentiable = True
    #: Registry name written by :meth:`config`.
    _registry_name: ClassVar[str]
    #: Checkpoint formats this class loads (``from_pretrained``, ``load_weights``).
    _formats: ClassVar[tuple[str, ...]]
    #: Prefixes of bundled weight names (``<prefix>-<name>.safetensors``) it tries, in order.
    _bundled: ClassVar[tuple[str, ...]]
    #: Per loadable format: the key prefix of this class's tensors inside that file.
    _tensor_prefix: ClassVar[dict[str, str]] = {}

    def __init__(
        self,
        representation: ImplicitRepresentation | None,
        preset: str | ImplicitPreset | None,
        sizes: ImplicitPreset | None,
        chunk_size: int | None,
    ) -> None:
        super().__init__()
        if representation is None:
            if sizes is None:
                raise ConfigError("give a representation or a preset")
            representation = ImplicitRepresentation(sizes.representation_config())
        self.representation = representation
        self.preset = _preset_name(preset)
        if chunk_size is None:
            chunk_size = sizes.chunk_size if sizes is not None else DEFAULT_CHUNK_SIZE
        self.chunk_size = chunk_size
        self.source: str | None = None

    def config(self) -> dict[str, Any]:
        """Registry name and the factory's arguments: ``build_defense(**config)`` reloads it.

        The sizes live in the checkpoint (see :meth:`checkpoint_config`).
        """
        return {
            "name": self._registry_name,
            "checkpoint": self.source,
            "preset": self.preset,
            "chunk_size": self.chunk_size,
        }

    # -- checkpoints -----------------------------------------------------------------------

    def checkpoint_config(self) -> dict[str, Any]:
        """The JSON config stored beside the weights."""
        raise NotImplementedError  # pragma: no cover - each subclass defines it

    def _weights(self) -> nn.Module:
        """The module whose ``state_dict`` is the checkpoint's tensors."""
        raise NotImplementedError  # pragma: no cover - each subclass defines it

    @classmethod
    def _from_config(cls, config: dict[str, Any], chunk_size: int | None) -> Self:
        """An untrained model with the sizes ``config`` (a checkpoint's JSON) records."""
        raise NotImplementedError  # pragma: no cover - each subclass defines it

    def save(self, prefix: str | os.PathLike[str], extra: dict[str, Any] | None = None) -> Path:
        """Write ``prefix.safetensors`` + ``prefix.json``; returns the weights path."""
        config = self.checkpoint_config()
        if extra:
            config["extra"] = extra
        return save_state(prefix, self._weights().state_dict(), config)

    def save_pretrained(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``directory/model.safetensors`` + ``directory/model.json``."""
        return self.save(Path(directory) / CHECKPOINT_STEM)

    @classmethod
    def _read(cls, spec: str | os.PathLike[str]) -> tuple[str, dict[str, Tensor], dict[str, Any]]:
        """``(source, tensors, config)`` of a checkpoint this class reads.

        The tensors are keyed as in :meth:`_weights`'s ``state_dict``.
        """
        prefix = resolve_checkpoint(spec, cls._bundled)
        tensors, config = load_state(prefix)
        source = str(prefix)
        fmt = _check_format(config, cls._formats, source)
        if fmt in cls._tensor_prefix:
            tensors = _split(tensors, cls._tensor_prefix[fmt])
        return source, tensors, config

    @classmethod
    def from_pretrained(
        cls,
        spec: str | os.PathLike[str],
        *,
        preset: str | ImplicitPreset | None = None,
        chunk_size: int | None = None,
        map_location: str | torch.device = "cpu",
    ) -> Self:
        """Load from a folder, a prefix, or a bundled name (``"cifar10"``), with its own sizes.

        An :class:`ImplicitReconstruction` also loads from an IRAD checkpoint (it takes the
        representation and leaves SampleNet out).

        Args:
            spec: see :func:`resolve_checkpoint`.
            preset: if given, the checkpoint must have been saved with this preset.
            chunk_size: override the saved chunk size.
        """
        source, tensors, config = cls._read(spec)
        _check_preset(config, preset, source)
        out = cls._from_config(config, chunk_size or config.get("chunk_size"))
        out.preset = str(config.get("preset", "custom"))
        _load_module(out._weights(), tensors, source, out.preset, None, cls.__name__)
        out.source = source
        return out.to(map_location)

    def load_weights(self, spec: str | os.PathLike[str]) -> None:
        """Load a checkpoint's weights into this model (sizes must match)."""
        source, tensors, config = self._read(spec)
        _load_module(
            self._weights(), tensors, source, self.preset, config.get("preset"), type(self).__name__
        )
        self.source = source


# --------------------------------------------------------------------------------------------
# the DISCO-style defense
# --------------------------------------------------------------------------------------------


class ImplicitReconstruction(_ImplicitDefense):
    """``RECONS(x)``: the implicit representation queried at the unshifted pixel centres.

    Args:
        representation: a trained :class:`ImplicitRepresentation`; default: a fresh (untrained)
            one of ``preset``'s sizes.
        preset: preset name (``"cpu"``, ``"paper"``) or :class:`ImplicitPreset`, used for the
            sizes of a fresh model and recorded in checkpoints.
        chunk_size: query points per pass, summed over the batch (bounds memory at inference).
        sampler: query at ``G + shift`` with a naive sampler instead of at ``G`` -- the SI
            (``d``) and SV (``γ``) rows of Table 8 (:func:`irad.resample.build_sampler`);
            ``None``: no sampling.

    Shape:
        - Input: ``(B, 3, H, W)`` in [0, 1], any ``H``, ``W``.
        - Output: ``(B, 3, H, W)`` in [0, 1].

    Example:
        >>> defense = ImplicitReconstruction(preset="cpu")  # untrained; use from_pretrained
        >>> defense(torch.rand(1, 3, 8, 8)).shape
        torch.Size([1, 3, 8, 8])
    """

    _registry_name = "recons"
    # Also reads IRAD checkpoints: their representation, leaving SampleNet out.
    _formats = (FORMAT_REPRESENTATION, FORMAT_IRAD)
    _bundled = ("recons", "irad")
    _tensor_prefix: ClassVar[dict[str, str]] = {FORMAT_IRAD: "representation."}

    def __init__(
        self,
        representation: ImplicitRepresentation | None = None,
        *,
        preset: str | ImplicitPreset | None = "cpu",
        chunk_size: int | None = None,
        sampler: Sampler | None = None,
    ) -> None:
        # The preset sizes only a fresh representation (and then sets the default chunk size).
        p = get_preset(preset) if preset is not None and representation is None else None
        super().__init__(representation, preset, p, chunk_size)
        self.sampler = sampler
        self.stochastic = bool(sampler is not None and sampler.stochastic)

    def config(self) -> dict[str, Any]:
        out = super().config()
        if self.sampler is not None:
            c = self.sampler.config()
            out.update(sampling=c["name"], shift=c.get("d", c.get("gamma")), seed=c.get("seed"))
        return out

    def purify(self, x: Tensor) -> Tensor:
        if self.sampler is None:
            return self.representation(x, chunk_size=self.chunk_size)
        b, _, h, w = x.shape
        points = make_grid(h, w, device=x.device, dtype=x.dtype) + self.sampler(
            b, h, w, dtype=x.dtype, device=x.device
        )
        rep = self.representation
        out = rep.query(rep.field(x), points.view(b, -1, 2), chunk_size=self.chunk_size)
        return out.view(b, h, w, 3).permute(0, 3, 1, 2)

    # -- checkpoints -----------------------------------------------------------------------

    def checkpoint_config(self) -> dict[str, Any]:
        """The JSON config stored beside the weights."""
        return {
            "format": FORMAT_REPRESENTATION,
            "format_version": FORMAT_VERSION,
            "preset": self.preset,
            "representation": self.representation.config.to_dict(),
            "chunk_size": self.chunk_size,
        }

    def _weights(self) -> nn.Module:
        return self.representation

    @classmethod
    def _from_config(cls, config: dict[str, Any], chunk_size: int | None) -> ImplicitReconstruction:
        return cls(_representation_from(config), preset=None, chunk_size=chunk_size)


# --------------------------------------------------------------------------------------------
# IRAD
# --------------------------------------------------------------------------------------------


class IRAD(_ImplicitDefense):
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

    Shape:
        - Input: ``(B, 3, H, W)`` in [0, 1], any ``H``, ``W``.
        - Output: ``(B, 3, H, W)`` in [0, 1].

    Example:
        >>> irad = IRAD(preset="cpu")  # untrained; use IRAD.from_pretrained(...)
        >>> irad(torch.rand(1, 3, 8, 8)).shape
        torch.Size([1, 3, 8, 8])
    """

    _registry_name = "irad"
    _formats = (FORMAT_IRAD,)
    _bundled = ("irad",)

    def __init__(
        self,
        representation: ImplicitRepresentation | None = None,
        samplenet: SampleNet | None = None,
        *,
        preset: str | ImplicitPreset | None = "cpu",
        samplenet_config: SampleNetConfig | None = None,
        chunk_size: int | None = None,
    ) -> None:
        p = get_preset(preset) if preset is not None else None
        super().__init__(representation, preset, p, chunk_size)
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
        field_ = self.representation.field(x)
        if self.samplenet.config.shared_encoder:
            return field_, field_
        return field_, FeatureField(self.samplenet.encode(x))

    def _grid(self, x: Tensor) -> tuple[Tensor, Tensor]:
        b, _, h, w = x.shape
        grid = make_coord((h, w), device=x.device, dtype=x.dtype).view(1, -1, 2).expand(b, -1, -1)
        cell = torch.tensor([2.0 / h, 2.0 / w], device=x.device, dtype=x.dtype).expand_as(grid)
        return grid, cell

    def _shift_normalized(
        self, field_s: FeatureField, grid: Tensor, cell: Tensor, checkpoint: bool = False
    ) -> Tensor:
        raw = self.samplenet(field_s, grid, cell, chunk_size=self.chunk_size, checkpoint=checkpoint)
        if self.samplenet.config.shift_units == "normalized":
            return raw
        h, w = field_s.size
        # pixel units -> LIIF's normalised units: one pixel is 2 / n.
        return raw * torch.tensor([2.0 / h, 2.0 / w], device=raw.device, dtype=raw.dtype)

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
        raw = self.samplenet(field_s, grid, cell, chunk_size=self.chunk_size)
        if self.samplenet.config.shift_units == "normalized":
            raw = raw * torch.tensor([h / 2.0, w / 2.0], dtype=raw.dtype, device=raw.device)
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
            field_, u, cell, chunk_size=self.chunk_size, checkpoint=checkpoint
        )
        out = (out * 0.5 + 0.5).clamp(0.0, 1.0)
        return out.view(b, h, w, 3).permute(0, 3, 1, 2)

    def purify(self, x: Tensor) -> Tensor:
        return self.resample(x)

    def reconstruction(self) -> ImplicitReconstruction:
        """The same representation without SampleNet (Table 8's "w.o. Sampling")."""
        out = ImplicitReconstruction(self.representation, preset=None, chunk_size=self.chunk_size)
        out.preset, out.source = self.preset, self.source
        return out

    # -- checkpoints -----------------------------------------------------------------------

    def checkpoint_config(self) -> dict[str, Any]:
        """The JSON config stored beside the weights."""
        enc = self.samplenet.encoder.config.to_dict() if self.samplenet.has_encoder else None
        return {
            "format": FORMAT_IRAD,
            "format_version": FORMAT_VERSION,
            "preset": self.preset,
            "representation": self.representation.config.to_dict(),
            "samplenet": self.samplenet.config.to_dict(),
            "samplenet_encoder": enc,
            "chunk_size": self.chunk_size,
        }

    def _weights(self) -> nn.Module:
        return self

    @classmethod
    def _from_config(cls, config: dict[str, Any], chunk_size: int | None) -> IRAD:
        rep = _representation_from(config)
        enc = config.get("samplenet_encoder")
        sn = SampleNet(
            rep.config.encoder.n_feats,
            SampleNetConfig.from_dict(config["samplenet"]),
            encoder=EDSRConfig(**enc) if enc else None,
        )
        return cls(rep, sn, preset=None, chunk_size=chunk_size)


# --------------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------------


def build_recons(
    checkpoint: str | None = "cifar10",
    preset: str | None = None,
    chunk_size: int | None = None,
    sampling: str | None = None,
    shift: float = 1.5,
    seed: int | None = None,
) -> ImplicitReconstruction:
    """``recons`` / ``disco`` by name: load ``checkpoint`` (``None``: an untrained model).

    ``sampling="si"`` / ``"sv"`` queries at shifted points (``shift`` = d or γ in pixels, ``seed``
    for SV): Table 8's naive-sampling rows.
    """
    if checkpoint is None:
        out = ImplicitReconstruction(preset=preset or "cpu", chunk_size=chunk_size)
    else:
        out = ImplicitReconstruction.from_pretrained(
            checkpoint, preset=preset, chunk_size=chunk_size
        )
    if sampling is not None:
        out.sampler = build_sampler(sampling, shift, seed=seed)
        out.stochastic = out.sampler.stochastic
    return out


def build_irad(
    checkpoint: str | None = "cifar10",
    preset: str | None = None,
    chunk_size: int | None = None,
    render: str | None = None,
) -> IRAD:
    """``irad`` by name: load ``checkpoint`` (``None``: an untrained model, zero shift).

    ``render`` overrides how the shifted points are rendered (``"implicit"``, ``"bilinear"``,
    ``"nearest"``; Table 15), keeping the checkpoint's SampleNet.
    """
    if checkpoint is None:
        out = IRAD(preset=preset or "cpu", chunk_size=chunk_size)
    else:
        out = IRAD.from_pretrained(checkpoint, preset=preset, chunk_size=chunk_size)
    if render is not None:
        out.samplenet.config = dataclasses.replace(out.samplenet.config, render=render)
    return out


__all__ = [
    "FORMAT_IRAD",
    "FORMAT_REPRESENTATION",
    "IRAD",
    "ImplicitReconstruction",
    "build_irad",
    "build_recons",
    "bundled_weights_dir",
    "resolve_checkpoint",
]
