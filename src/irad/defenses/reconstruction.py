"""The DISCO-style defense: the implicit representation queried at the unshifted pixel centres.

:class:`ImplicitReconstruction` (``recons``, aliases ``disco``, ``implicit-reconstruction``) is
``RECONS(x)``: the "w.o. Sampling" row of Table 8 and the DISCO row of Table 2 (Ho &
Vasconcelos 2022 use the same LIIF design). With a naive sampler it queries ``G + shift``
instead: the SI and SV rows of Table 8.

:class:`ImplicitDefense` is what it shares with :class:`~irad.defenses.irad.IRAD`: the
representation, the preset and chunk size, and checkpoints through
:class:`irad.checkpoint.Pretrained` (``save_pretrained`` / ``from_pretrained`` accept a folder,
a ``prefix`` / ``prefix.safetensors`` path such as a training run's ``runs/x/model``, or the
name of weights bundled in the package, ``"cifar10"``). An :class:`ImplicitReconstruction` also
loads from an IRAD checkpoint (it takes the representation and leaves SampleNet out).
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from irad.checkpoint import Pretrained, config_field
from irad.defenses.base import Defense
from irad.errors import CheckpointError, ConfigError
from irad.models.implicit_presets import ImplicitPreset, get_preset
from irad.models.liif import DEFAULT_CHUNK_SIZE, ImplicitConfig, ImplicitRepresentation
from irad.resample.coordinates import make_grid
from irad.resample.samplers import Sampler, build_sampler
from irad.utils.env import warn_if_bfloat16_emulated


def _preset_name(preset: str | ImplicitPreset | None) -> str:
    if preset is None:
        return "custom"
    return preset.name if isinstance(preset, ImplicitPreset) else str(preset)


#: Precisions of the implicit defenses' forward: exact float32 (default), or bfloat16 autocast
#: (about 3x faster on CPUs with AMX / AVX512-BF16, 9x slower where it is emulated; outputs
#: move by up to about 4e-2, see ``docs/implicit.md``).
PRECISIONS = ("float32", "bfloat16")


def check_precision(value: object) -> str:
    """``value`` if it is one of :data:`PRECISIONS`, else a :class:`ConfigError`."""
    if value not in PRECISIONS:
        raise ConfigError(f"precision must be one of {PRECISIONS}, got {value!r}")
    return str(value)


def read_chunk_size(config: dict[str, Any]) -> int | None:
    """The ``chunk_size`` field of a checkpoint config (``None`` when absent)."""
    value = config_field(config, "chunk_size", (int, type(None)), default=None)
    if value is not None and value < 1:
        raise ConfigError(f"chunk_size must be a positive number of query points, got {value}")
    return value


class ImplicitDefense(Pretrained, Defense):
    """Base of the two implicit-representation defenses: representation, preset, chunk size,
    ``config()`` and checkpoints.

    A subclass sets ``checkpoint_kind`` and its registry name, and implements
    ``checkpoint_config()`` / ``from_checkpoint_config()`` (and ``checkpoint_module()`` when
    its checkpoint holds less than the whole module).
    """

    stochastic = False
    differentiable = True
    #: Registry name written by :meth:`config`.
    registry_name: ClassVar[str]

    def __init__(
        self,
        representation: ImplicitRepresentation | None,
        preset: str | ImplicitPreset | None,
        sizes: ImplicitPreset | None,
        chunk_size: int | None,
        fast: bool = True,
        precision: str = "float32",
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
        #: The fast path (default) or the per-query reference path of
        #: :func:`irad.models.liif.local_ensemble`: same outputs up to float rounding.
        self.fast = bool(fast)
        self.precision = precision
        self.source: str | None = None

    @property
    def precision(self) -> str:
        """``"float32"`` (exact) or ``"bfloat16"`` (autocast in :meth:`purify`)."""
        return self._precision

    @precision.setter
    def precision(self, value: str) -> None:
        self._precision = check_precision(value)

    def autocast(self, x: Tensor) -> contextlib.AbstractContextManager[Any]:
        """The context :meth:`purify` computes in: bfloat16 autocast or nothing."""
        if self.precision == "bfloat16":
            warn_if_bfloat16_emulated(x.device, f"{self.registry_name} precision=bfloat16")
            return torch.autocast(x.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def config(self) -> dict[str, Any]:
        """Registry name and the factory's arguments: ``build_defense(**config)`` reloads it.

        The sizes live in the checkpoint (see :meth:`checkpoint_config`). ``fast`` and
        ``precision`` are recorded only when they differ from the defaults.
        """
        out = {
            "name": self.registry_name,
            "checkpoint": self.source,
            "preset": self.preset,
            "chunk_size": self.chunk_size,
        }
        if not self.fast:
            out["fast"] = False
        if self.precision != "float32":
            out["precision"] = self.precision
        return out

    # -- checkpoints -----------------------------------------------------------------------

    @classmethod
    def from_pretrained(  # type: ignore[override]
        cls,
        spec: str | os.PathLike[str],
        *,
        preset: str | ImplicitPreset | None = None,
        chunk_size: int | None = None,
        map_location: str | torch.device = "cpu",
    ) -> Any:
        """Load from a folder, a prefix, or a bundled name (``"cifar10"``), with its own sizes.

        An :class:`ImplicitReconstruction` also loads from an IRAD checkpoint (it takes the
        representation and leaves SampleNet out).

        Args:
            spec: see :func:`irad.checkpoint.resolve`.
            preset: if given, the checkpoint must have been saved with this preset.
            chunk_size: override the saved chunk size.
        """
        ckpt = cls.read_checkpoint(spec)
        saved = ckpt.config.get("preset")
        if preset is not None and saved != _preset_name(preset):
            raise CheckpointError(
                f"checkpoint {ckpt.source} was saved with preset {saved!r}, but preset "
                f"{_preset_name(preset)!r} was requested (drop the preset argument to load it "
                "with its own sizes)"
            )
        out = ckpt.build(cls)
        if chunk_size is not None:
            out.chunk_size = chunk_size
        ckpt.load_into(out.checkpoint_module())
        out.checkpoint_metadata = ckpt.metadata
        out.source = ckpt.source
        return out.to(map_location).eval()

    def load_weights(self, spec: str | os.PathLike[str]) -> None:
        """Load a checkpoint's weights into this model (sizes must match)."""
        ckpt = self.read_checkpoint(spec)
        saved = ckpt.config.get("preset")
        hint = None
        if saved is not None and saved != self.preset:
            hint = (
                f"it holds preset {saved!r} weights but this model has preset {self.preset!r}; "
                f"load it with {type(self).__name__}.from_pretrained, which builds the "
                "checkpoint's own sizes"
            )
        ckpt.load_into(self.checkpoint_module(), hint=hint)
        self.source = ckpt.source


class ImplicitReconstruction(ImplicitDefense):
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
        fast: the fast path (default) or the per-query reference path (the same output up to
            float rounding; :mod:`irad.models.liif`).
        precision: ``"float32"`` (default) or ``"bfloat16"`` (autocast: faster on CPUs with
            AMX, outputs within about 1e-2; :data:`PRECISIONS`).

    Shape:
        - Input: ``(B, 3, H, W)`` in [0, 1], any ``H``, ``W``.
        - Output: ``(B, 3, H, W)`` in [0, 1].

    Example:
        >>> defense = ImplicitReconstruction(preset="cpu")  # untrained; use from_pretrained
        >>> defense(torch.rand(1, 3, 8, 8)).shape
        torch.Size([1, 3, 8, 8])
    """

    registry_name = "recons"
    checkpoint_kind = "implicit-representation"
    # Also reads IRAD checkpoints: their representation, leaving SampleNet out.
    checkpoint_reads: ClassVar[dict[str, str]] = {"irad": "representation."}
    checkpoint_bundled = ("recons", "irad")
    checkpoint_hint = (
        "ImplicitReconstruction.from_pretrained (the DISCO-style defense), or start IRAD from "
        "it with IRAD.from_representation"
    )

    def __init__(
        self,
        representation: ImplicitRepresentation | None = None,
        *,
        preset: str | ImplicitPreset | None = "cpu",
        chunk_size: int | None = None,
        sampler: Sampler | None = None,
        fast: bool = True,
        precision: str = "float32",
    ) -> None:
        # The preset sizes only a fresh representation (and then sets the default chunk size).
        p = get_preset(preset) if preset is not None and representation is None else None
        super().__init__(representation, preset, p, chunk_size, fast, precision)
        self.sampler = sampler
        self.stochastic = bool(sampler is not None and sampler.stochastic)

    def config(self) -> dict[str, Any]:
        out = super().config()
        if self.sampler is not None:
            c = self.sampler.config()
            out.update(sampling=c["name"], shift=c.get("d", c.get("gamma")), seed=c.get("seed"))
        return out

    def purify(self, x: Tensor) -> Tensor:
        with self.autocast(x):
            return self._purify(x).to(x.dtype)

    def _purify(self, x: Tensor) -> Tensor:
        if self.sampler is None:
            return self.representation(x, chunk_size=self.chunk_size, fast=self.fast)
        b, _, h, w = x.shape
        points = make_grid(h, w, device=x.device, dtype=x.dtype) + self.sampler(
            b, h, w, dtype=x.dtype, device=x.device
        )
        rep = self.representation
        out = rep.query(
            rep.field(x, fast=self.fast),
            points.view(b, -1, 2),
            chunk_size=self.chunk_size,
            fast=self.fast,
        )
        return out.view(b, h, w, 3).permute(0, 3, 1, 2)

    # -- checkpoints -----------------------------------------------------------------------

    def checkpoint_config(self) -> dict[str, Any]:
        """The sizes that rebuild it (the ``config`` of its checkpoint's JSON)."""
        return {
            "preset": self.preset,
            "representation": self.representation.config.to_dict(),
            "chunk_size": self.chunk_size,
        }

    def checkpoint_module(self) -> nn.Module:
        return self.representation

    @classmethod
    def from_checkpoint_config(cls, config: dict[str, Any]) -> ImplicitReconstruction:
        rep = ImplicitConfig.from_dict(config_field(config, "representation", dict))
        out = cls(ImplicitRepresentation(rep), preset=None, chunk_size=read_chunk_size(config))
        out.preset = config_field(config, "preset", str, default="custom")
        return out


def build_recons(
    checkpoint: str | None = "cifar10",
    preset: str | None = None,
    chunk_size: int | None = None,
    sampling: str | None = None,
    shift: float = 1.5,
    seed: int | None = None,
    fast: bool = True,
    precision: str = "float32",
) -> ImplicitReconstruction:
    """``recons`` / ``disco`` by name: load ``checkpoint`` (``None``: an untrained model).

    ``sampling="si"`` / ``"sv"`` queries at shifted points (``shift`` = d or γ in pixels, ``seed``
    for SV): Table 8's naive-sampling rows. ``fast=False`` selects the per-query reference path,
    ``precision="bfloat16"`` bfloat16 autocast.
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
    out.fast = bool(fast)
    out.precision = precision
    return out


__all__ = [
    "PRECISIONS",
    "ImplicitDefense",
    "ImplicitReconstruction",
    "build_recons",
    "check_precision",
]
