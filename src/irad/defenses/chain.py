"""A chain of defenses applied one after another: ``DefenseChain(DiffPure(t=20), IRAD())``.

The chain is random if any part is (adaptive attacks then use EOT through the whole chain) and
differentiable only if every part is. Specs name a chain with ``>`` between the parts, first
applied first: ``"diffpure:t=20>irad"`` is the paper's IRAD+DiffPure.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from irad.defenses.base import Defense
from irad.errors import InputError


class DefenseChain(Defense):
    """``parts[-1](...parts[1](parts[0](x)))``: each part sees the previous part's output.

    Args:
        parts: two or more :class:`Defense` modules, in the order they are applied.

    Shape:
        - Input: ``(B, 3, H, W)`` in [0, 1]; Output: the same shape, in [0, 1].

    Example:
        >>> from irad.defenses import build_defense
        >>> import torch
        >>> chain = DefenseChain(build_defense("bit-depth", bits=5), build_defense("median"))
        >>> chain.stochastic, chain.differentiable
        (False, False)
        >>> chain(torch.rand(1, 3, 8, 8)).shape
        torch.Size([1, 3, 8, 8])
    """

    def __init__(self, *parts: Defense) -> None:
        super().__init__()
        if len(parts) == 1 and isinstance(parts[0], list | tuple):
            parts = tuple(parts[0])
        if len(parts) < 2:
            raise InputError(f"a chain needs at least two defenses, got {len(parts)}")
        for i, part in enumerate(parts):
            if not isinstance(part, Defense):
                raise InputError(
                    f"part {i} of the chain must be an irad Defense, got {type(part).__name__}"
                )
        self.parts = nn.ModuleList(parts)
        self.stochastic = any(p.stochastic for p in parts)
        self.differentiable = all(p.differentiable for p in parts)

    def purify(self, x: Tensor) -> Tensor:
        for part in self.parts:
            x = part(x)
        return x

    def differentiable_surrogate(self) -> Defense:
        surrogates = [p.differentiable_surrogate() for p in self.parts]
        if all(s is p for s, p in zip(surrogates, self.parts, strict=True)):
            return self
        return DefenseChain(*surrogates)

    def config(self) -> dict[str, Any]:
        return {"name": "chain", "parts": [p.config() for p in self.parts]}

    def extra_repr(self) -> str:
        return ""


def build_irad_diffpure(
    t: int = 20,
    *,
    diffusion: Any = "cifar10",
    irad: Any = "cifar10",
    reverse_steps: int | None = None,
    sampler: str = "ddpm",
    seed: int | None = None,
    checkpointing: bool = True,
) -> DefenseChain:
    """IRAD+DiffPure (Sec. 5): DiffPure with ``t`` steps, then IRAD on its output.

    Args:
        t: DiffPure's diffusion steps (the paper: 20).
        diffusion: the score model (see :class:`irad.defenses.diffpure.DiffPure`).
        irad: IRAD weights (see ``IRAD.from_pretrained``).
        reverse_steps, sampler, seed, checkpointing: DiffPure's settings.
    """
    from irad.defenses import build_defense
    from irad.defenses.diffpure import DiffPure

    purifier = DiffPure(
        diffusion,
        t,
        reverse_steps=reverse_steps,
        sampler=sampler,
        seed=seed,
        checkpointing=checkpointing,
    )
    resampler = irad if isinstance(irad, Defense) else build_defense("irad", checkpoint=irad)
    return DefenseChain(purifier, resampler)
