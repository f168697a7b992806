"""SampleNet (Sec. 4.3, Eq. 10): a learned per-pixel shift of the sampling grid.

``U = G + SAMPLENET(F, G)``: an MLP reads, for each output pixel, the same inputs as the
decoder φ (3×3-unfolded encoder feature, relative coordinate and cell, over the four nearest
feature pixels blended with LIIF's area weights) and predicts a 2-D shift. The image is then the
implicit representation queried at ``U`` (see :class:`irad.defenses.irad.IRAD`).

Units of the shift (``shift_units``):

* ``"pixel"`` (irad's default): the MLP's output is a shift in input pixels, ``(d_row, d_col)``;
  a value of 1 moves the sample point by one pixel whatever the image size.
* ``"normalized"`` (the official release): the output is added to LIIF's [-1, 1] coordinates,
  so 1 means half the image height; ``2 / H`` is one pixel.

The last layer starts at zero, so an untrained SampleNet predicts a shift of exactly 0 and IRAD
reduces to the plain implicit reconstruction (the DISCO-style defense) bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from irad.checkpoint import ConfigFieldError, config_field
from irad.errors import ConfigError
from irad.models.edsr import EDSR, EDSRConfig
from irad.models.liif import DEFAULT_CHUNK_SIZE, MLP, FeatureField, local_ensemble

ShiftUnits = Literal["pixel", "normalized"]
EncoderInput = Literal["normalized", "unit"]
Render = Literal["implicit", "bilinear", "nearest"]
RENDERS = ("implicit", "bilinear", "nearest")


@dataclass(frozen=True)
class SampleNetConfig:
    """Settings of SampleNet.

    Args:
        hidden: hidden widths of the MLP (paper preset ``(256,) * 4``: five layers).
        shared_encoder: read the implicit representation's features (one encoder pass per image,
            irad's default). ``False`` gives SampleNet its own encoder copy, as the official code
            does (initialised from the representation's encoder and frozen in stage 2).
        shift_units: ``"pixel"`` or ``"normalized"`` (official), see the module docstring.
        encoder_input: input of a separate encoder: ``"normalized"`` ((x - 0.5) / 0.5, like the
            representation) or ``"unit"`` (x in [0, 1], as the official SampleNet is fed).
            Ignored with a shared encoder.
        render: what the shifted points ``U`` are rendered with: ``"implicit"`` (IRAD: the
            implicit representation) or a naive reconstruction of the input, ``"bilinear"`` or
            ``"nearest"`` (Table 15; SampleNet still reads the representation's features).
            Nearest has no gradient with respect to ``U``, so stage 2 cannot train it.
    """

    hidden: tuple[int, ...] = (256, 256, 256, 256)
    shared_encoder: bool = True
    shift_units: ShiftUnits = "pixel"
    encoder_input: EncoderInput = "normalized"
    render: Render = "implicit"

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        if any(h < 1 for h in self.hidden):
            raise ConfigError(f"SampleNet hidden widths must be positive, got {self.hidden}")
        if self.shift_units not in ("pixel", "normalized"):
            raise ConfigError(
                f"shift_units must be 'pixel' or 'normalized', got {self.shift_units!r}"
            )
        if self.encoder_input not in ("normalized", "unit"):
            raise ConfigError(
                f"encoder_input must be 'normalized' or 'unit', got {self.encoder_input!r}"
            )
        if self.render not in RENDERS:
            raise ConfigError(f"render must be one of {RENDERS}, got {self.render!r}")

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "hidden": list(self.hidden),
            "shared_encoder": self.shared_encoder,
            "shift_units": self.shift_units,
            "encoder_input": self.encoder_input,
        }
        if self.render != "implicit":  # absent from IRAD checkpoints, which all render implicitly
            d["render"] = self.render
        return d

    @classmethod
    def from_dict(cls, d: Any, *, where: str = "samplenet") -> SampleNetConfig:
        """The inverse of :meth:`to_dict`, naming the field (``where.name``) that is wrong."""
        defaults = cls()
        known = ("hidden", "shared_encoder", "shift_units", "encoder_input", "render")
        unknown = sorted(set(d) - set(known)) if isinstance(d, dict) else []
        if unknown:
            raise ConfigFieldError(f"{where}.{unknown[0]}", f"is not a SampleNet setting {known}")
        return cls(
            hidden=tuple(config_field(d, "hidden", list, items=int, where=where)),
            shared_encoder=config_field(
                d, "shared_encoder", bool, default=defaults.shared_encoder, where=where
            ),
            shift_units=config_field(
                d, "shift_units", str, default=defaults.shift_units, where=where
            ),
            encoder_input=config_field(
                d, "encoder_input", str, default=defaults.encoder_input, where=where
            ),
            render=config_field(d, "render", str, default=defaults.render, where=where),
        )

    @classmethod
    def official(cls, hidden: Sequence[int] = (256, 256, 256, 256)) -> SampleNetConfig:
        """The official release's conventions: own encoder fed [0, 1], normalised shifts."""
        return cls(
            hidden=tuple(hidden),
            shared_encoder=False,
            shift_units="normalized",
            encoder_input="unit",
        )


class SampleNet(nn.Module):
    """The shift predictor. Parameters ``imnet.layers.*`` (and ``encoder.*`` when not shared).

    Args:
        feat_dim: channels C of the encoder features.
        config: :class:`SampleNetConfig`.
        encoder: EDSR sizes of the separate encoder (only with ``shared_encoder=False``).

    Shape:
        - :meth:`forward`: coord, cell ``(B, Q, 2)`` normalised -> shift ``(B, Q, 2)`` in the
          configured units.

    Example:
        >>> from irad.models.liif import FeatureField
        >>> from irad.resample.coordinates import make_coord
        >>> net = SampleNet(8, SampleNetConfig(hidden=(16, 16)))
        >>> g = make_coord((4, 4)).view(1, -1, 2)
        >>> net(FeatureField(torch.rand(1, 8, 4, 4)), g, torch.full_like(g, 0.5)).abs().max()
        tensor(0., grad_fn=<MaxBackward1>)
    """

    def __init__(
        self,
        feat_dim: int,
        config: SampleNetConfig | None = None,
        encoder: EDSRConfig | None = None,
    ) -> None:
        super().__init__()
        self.config = config or SampleNetConfig()
        self.feat_dim = feat_dim
        if not self.config.shared_encoder:
            enc_cfg = encoder or EDSRConfig(n_feats=feat_dim)
            if enc_cfg.n_feats != feat_dim:
                raise ConfigError(
                    f"SampleNet encoder has {enc_cfg.n_feats} channels, expected {feat_dim}"
                )
            self.encoder = EDSR(enc_cfg)
        self.imnet = MLP(9 * feat_dim + 4, 2, self.config.hidden)
        self.reset_last_layer()

    @property
    def has_encoder(self) -> bool:
        return not self.config.shared_encoder

    def reset_last_layer(self) -> None:
        """Zero the output layer: the shift is exactly 0 until SampleNet is trained."""
        with torch.no_grad():
            self.imnet.last.weight.zero_()
            self.imnet.last.bias.zero_()

    def encode(self, x: Tensor, *, fast: bool = True) -> Tensor:
        """Features of SampleNet's own encoder (only when ``shared_encoder=False``);
        ``fast``: the encoder's fast forward (:class:`~irad.models.edsr.EDSR`)."""
        if not self.has_encoder:
            raise ConfigError("this SampleNet shares the representation's encoder; it has none")
        return self.encoder(self.encoder_input(x), fast=fast)

    def encoder_input(self, x: Tensor) -> Tensor:
        """What its own encoder is fed: ``x`` (``"unit"``) or ``(x - 0.5) / 0.5``."""
        return x if self.config.encoder_input == "unit" else (x - 0.5) / 0.5

    def forward(
        self,
        field_: FeatureField,
        coord: Tensor,
        cell: Tensor,
        *,
        chunk_size: int | None = DEFAULT_CHUNK_SIZE,
        checkpoint: bool = False,
        fast: bool = True,
    ) -> Tensor:
        """The raw shift at normalised query points (units: ``config.shift_units``).

        ``fast``: the fast path of :func:`~irad.models.liif.local_ensemble` (default; on the
        pixel-centre grid it computes about one ensemble term per query instead of four) or the
        per-query reference path.
        """
        return local_ensemble(
            field_,
            coord,
            cell,
            self.imnet,
            chunk_size=chunk_size,
            checkpoint=checkpoint,
            fast=fast,
        )
