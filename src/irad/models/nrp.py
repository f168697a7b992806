"""The purifier network of NRP (Naseer et al., CVPR 2020): an image-to-image convolutional net.

``P(x) = x + tail(body(head(x)))``: a 3x3 convolution to ``channels`` features, ``blocks``
blocks at full resolution, a 3x3 convolution back to RGB, added to the input (a purifier starts
near the identity and learns the correction). Two kinds of block:

- ``"residual"``: conv-ReLU-conv with a skip (the ``cpu`` preset; a few tens of thousands of
  parameters, trains on a CPU);
- ``"rrdb"``: ESRGAN's residual-in-residual dense block (three dense blocks of five convolutions,
  growth ``growth``, residuals scaled by 0.2), the block of NRP's released purifier (``paper``
  preset: 64 channels, 23 blocks, growth 32, as their ``NRP(3, 3, 64, 23)``).

    >>> net = Purifier(PurifierConfig.from_preset("tiny"))
    >>> net(torch.rand(2, 3, 16, 16)).shape
    torch.Size([2, 3, 16, 16])
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from irad.checkpoint import Pretrained
from irad.checks import check_choice, check_int, check_positive_int
from irad.errors import ConfigError

_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"channels": 8, "blocks": 1, "block": "residual"},
    # ~75 k parameters; ~2 ms per 32x32 image forward on one CPU thread
    "cpu": {"channels": 32, "blocks": 4, "block": "residual"},
    # NRP's released purifier: RRDB 64 channels, 23 blocks (~16.7 M parameters)
    "paper": {"channels": 64, "blocks": 23, "block": "rrdb", "growth": 32},
}


@dataclass
class PurifierConfig:
    """What a :class:`Purifier` is.

    Args:
        channels: feature channels of the body.
        blocks: number of body blocks.
        block: ``"residual"`` or ``"rrdb"`` (see the module docstring).
        growth: growth channels of an RRDB's dense convolutions (unused by ``"residual"``).
        preset: the preset these sizes came from (``"custom"`` otherwise); informational.

    Example:
        >>> cfg = PurifierConfig.from_preset("paper")
        >>> cfg.channels, cfg.blocks, cfg.block
        (64, 23, 'rrdb')
        >>> PurifierConfig.from_dict(cfg.to_dict()) == cfg
        True
    """

    channels: int = 32
    blocks: int = 4
    block: str = "residual"
    growth: int = 32
    preset: str = "custom"

    PRESETS: ClassVar[tuple[str, ...]] = tuple(_PRESETS)

    def __post_init__(self) -> None:
        self.channels = check_positive_int(self.channels, "channels")
        self.blocks = check_int(self.blocks, "blocks", 0)
        self.block = check_choice(self.block, "block", ("residual", "rrdb"))
        self.growth = check_positive_int(self.growth, "growth")

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> PurifierConfig:
        """The sizes of preset ``name`` (``tiny``, ``cpu``, ``paper``), with overrides."""
        key = str(name).strip().lower()
        if key not in _PRESETS:
            raise ConfigError(f"unknown NRP purifier preset {name!r}; known: {', '.join(_PRESETS)}")
        return cls(**{**_PRESETS[key], "preset": key, **overrides})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PurifierConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown PurifierConfig fields: {', '.join(unknown)}")
        return cls(**d)


def _conv(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1)


class ResidualBlock(nn.Module):
    """``x + conv(relu(conv(x)))``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv(channels, channels), nn.ReLU(), _conv(channels, channels))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class DenseBlock(nn.Module):
    """Five 3x3 convolutions, each seeing every earlier output; residual scaled by 0.2."""

    def __init__(self, channels: int, growth: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            _conv(channels + i * growth, growth if i < 4 else channels) for i in range(5)
        )
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x: Tensor) -> Tensor:
        features = [x]
        for i, conv in enumerate(self.convs):
            out = conv(torch.cat(features, 1))
            if i < 4:
                features.append(self.act(out))
        return x + 0.2 * out


class RRDB(nn.Module):
    """Residual-in-residual dense block (ESRGAN): three dense blocks, residual scaled by 0.2."""

    def __init__(self, channels: int, growth: int) -> None:
        super().__init__()
        self.body = nn.Sequential(*(DenseBlock(channels, growth) for _ in range(3)))

    def forward(self, x: Tensor) -> Tensor:
        return x + 0.2 * self.body(x)


class Purifier(nn.Module, Pretrained):
    """NRP's purifier: images to images, ``x + correction(x)``.

    Args:
        config: sizes (:meth:`PurifierConfig.from_preset`; default the ``cpu`` preset).

    Shape:
        - Input: ``(B, 3, H, W)`` in [0, 1].
        - Output: ``(B, 3, H, W)``, not clamped (the NRP defense clamps to [0, 1]).
    """

    checkpoint_kind = "nrp"
    checkpoint_hint = "Purifier.from_pretrained, or build_defense('nrp', checkpoint=...)"

    def __init__(self, config: PurifierConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else PurifierConfig.from_preset("cpu")
        c = self.config
        self.head = _conv(3, c.channels)
        blocks = (
            ResidualBlock(c.channels) if c.block == "residual" else RRDB(c.channels, c.growth)
            for _ in range(c.blocks)
        )
        self.body = nn.Sequential(*blocks)
        self.tail = _conv(c.channels, 3)
        with torch.no_grad():  # start at the identity: P(x) = x
            self.tail.weight.zero_()
            self.tail.bias.zero_()

    def forward(self, x: Tensor) -> Tensor:
        features = self.head(x)
        return x + self.tail(features + self.body(features))

    def checkpoint_config(self) -> dict[str, Any]:
        return self.config.to_dict()

    @classmethod
    def from_checkpoint_config(cls, config: dict[str, Any]) -> Purifier:
        return cls(PurifierConfig.from_dict(config))
