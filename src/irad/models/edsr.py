"""EDSR feature encoder without upsampling: the FEAT(·) of the implicit representation.

Lim et al. 2017 ("Enhanced deep residual networks"), in the ``edsr-baseline`` / ``no_upsampling``
form that LIIF (Chen et al. 2021) and IRAD use: a head convolution, ``n_resblocks`` residual
blocks (conv-ReLU-conv, scaled by ``res_scale``), a body convolution and a global skip. The output
keeps the input's height and width and has ``n_feats`` channels.

Parameter names follow LIIF's (``head.0.weight``, ``body.<i>.body.0.weight``,
``body.<n_resblocks>.weight``), so official checkpoints load after dropping LIIF's unused
``sub_mean`` / ``add_mean`` buffers-as-parameters.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from irad.checkpoint import ConfigFieldError, config_field
from irad.errors import ConfigError


@dataclass(frozen=True)
class EDSRConfig:
    """Sizes of the EDSR encoder.

    Args:
        n_resblocks: number of residual blocks (paper preset 16).
        n_feats: channels of every convolution, i.e. the feature dimension C (paper preset 64).
        res_scale: scale of each residual branch (1 for EDSR-baseline).
        in_channels: image channels (3).
    """

    n_resblocks: int = 16
    n_feats: int = 64
    res_scale: float = 1.0
    in_channels: int = 3

    def __post_init__(self) -> None:
        if self.n_resblocks < 0 or self.n_feats < 1 or self.in_channels < 1:
            raise ConfigError(f"invalid EDSR sizes: {self}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Any, *, where: str = "encoder") -> EDSRConfig:
        """The inverse of :meth:`to_dict`, naming the field (``where.name``) that is wrong."""
        known = ("n_resblocks", "n_feats", "res_scale", "in_channels")
        unknown = sorted(set(d) - set(known)) if isinstance(d, dict) else []
        if unknown:
            raise ConfigFieldError(f"{where}.{unknown[0]}", f"is not an EDSR size ({known})")
        return cls(
            n_resblocks=config_field(d, "n_resblocks", int, where=where),
            n_feats=config_field(d, "n_feats", int, where=where),
            res_scale=float(config_field(d, "res_scale", float, default=1.0, where=where)),
            in_channels=config_field(d, "in_channels", int, default=3, where=where),
        )


def _conv3x3(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, padding=1, bias=True)


class ResBlock(nn.Module):
    """``x + res_scale * conv(relu(conv(x)))`` (no batch norm, as in EDSR).

    Shape:
        - Input / output: ``(B, C, H, W)``.
    """

    def __init__(self, n_feats: int, res_scale: float = 1.0) -> None:
        super().__init__()
        # Indices 0 and 2 match LIIF's `body.<i>.body.0` / `body.<i>.body.2` parameter names.
        self.body = nn.Sequential(_conv3x3(n_feats, n_feats), nn.ReLU(), _conv3x3(n_feats, n_feats))
        self.res_scale = res_scale

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x) * self.res_scale


class EDSR(nn.Module):
    """EDSR encoder without upsampling: ``(B, 3, H, W) -> (B, n_feats, H, W)``.

    The input is whatever the caller normalises it to; the implicit representation feeds it
    ``(x - 0.5) / 0.5`` (values in [-1, 1]).

    Shape:
        - Input: ``(B, in_channels, H, W)``.
        - Output: ``(B, n_feats, H, W)``.

    Example:
        >>> import torch
        >>> enc = EDSR(EDSRConfig(n_resblocks=2, n_feats=8))
        >>> enc(torch.zeros(1, 3, 5, 7)).shape
        torch.Size([1, 8, 5, 7])
    """

    def __init__(self, config: EDSRConfig | None = None) -> None:
        super().__init__()
        self.config = config or EDSRConfig()
        c = self.config
        self.head = nn.Sequential(_conv3x3(c.in_channels, c.n_feats))
        blocks: list[nn.Module] = [ResBlock(c.n_feats, c.res_scale) for _ in range(c.n_resblocks)]
        blocks.append(_conv3x3(c.n_feats, c.n_feats))
        self.body = nn.Sequential(*blocks)
        self.out_dim = c.n_feats

    def forward(self, x: Tensor, *, fast: bool = False) -> Tensor:
        """Features of ``x``; ``fast=True`` computes them channels last with in-place ReLUs and
        residual additions (fewer temporaries; about 25 % less CPU time at the paper's sizes),
        equal to the default path up to float rounding. The output is then channels last."""
        if fast:
            return self._forward_fast(x)
        x = self.head(x)
        # Global skip: the body learns a residual on top of the head's features.
        return self.body(x) + x

    def _forward_fast(self, x: Tensor) -> Tensor:
        # In place is safe under autograd: a convolution's backward needs its input and weight,
        # not its output, and neither ReLU's nor an addition's backward needs the overwritten
        # value. The additions keep the default path's operand order (x + r is r + x in IEEE).
        head = self.head(x.contiguous(memory_format=torch.channels_last))
        r = head
        blocks = list(self.body)
        for block in blocks[:-1]:
            assert isinstance(block, ResBlock)
            conv1, _, conv2 = block.body
            t = conv2(conv1(r).relu_())
            if block.res_scale != 1:
                t = t.mul_(block.res_scale)
            r = t.add_(r)
        return blocks[-1](r).add_(head)
