"""The ``Defense`` interface: an ``nn.Module`` from images in [0, 1] to images in [0, 1].

A defense declares two facts the evaluation harness relies on:

* ``stochastic``: whether two calls on the same input may differ (then adaptive attacks use
  expectation over transformation, and AutoAttack its ``rand`` version);
* ``differentiable``: whether its forward has useful gradients (if not, an adaptive attack needs
  BPDA or a differentiable surrogate, see :meth:`Defense.differentiable_surrogate`).

Dtype policy (every defense, enforced by :meth:`Defense.forward`): a defense accepts images of
any floating dtype (float16, bfloat16, float32, float64), computes in its own dtype
(:meth:`Defense.compute_dtype`: the dtype of its parameters, float32 for a defense without
any) and returns the input's dtype. Gradients flow through both casts. To run a learned defense
in another precision, convert the defense (``defense.half()``, ``defense.double()``), not only
the images.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
from torch import Tensor, nn

from irad.checks import check_images


class Defense(nn.Module):
    """Base class of every input-transformation defense.

    Subclasses implement :meth:`purify` only; ``forward`` validates the input, casts it to
    :meth:`compute_dtype`, and clamps the output to [0, 1] in the input's dtype (the dtype
    policy of the module docstring), so ``purify`` always sees its own dtype.

    Shape:
        - Input: ``(B, 3, H, W)``, any floating dtype, values in [0, 1].
        - Output: ``(B, 3, H, W)``, the input's dtype, values in [0, 1].

    Example:
        >>> x = torch.rand(1, 3, 4, 4, dtype=torch.float64)
        >>> Identity()(x).dtype, Identity().compute_dtype()
        (torch.float64, torch.float32)
    """

    #: Two calls on the same input may give different outputs.
    stochastic: bool = False
    #: The forward pass has informative gradients with respect to the input.
    differentiable: bool = True

    def compute_dtype(self) -> torch.dtype:
        """The dtype ``purify`` computes in: the first floating parameter's (or buffer's),
        float32 for a defense that has none."""
        for t in itertools.chain(self.parameters(), self.buffers()):
            if t.is_floating_point():
                return t.dtype
        return torch.float32

    def forward(self, x: Tensor) -> Tensor:
        check_images(x, "defense input")
        dtype = self.compute_dtype()
        out = self.purify(x if x.dtype == dtype else x.to(dtype))
        return out.clamp(0.0, 1.0).to(x.dtype)

    def purify(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def differentiable_surrogate(self) -> Defense:
        """A differentiable stand-in for adaptive attacks (itself when already differentiable)."""
        return self

    def config(self) -> dict[str, Any]:
        """Name and settings, recorded with every result."""
        return {"name": type(self).__name__}

    def extra_repr(self) -> str:
        cfg = {k: v for k, v in self.config().items() if k != "name"}
        return ", ".join(f"{k}={v}" for k, v in cfg.items())


class Identity(Defense):
    """No defense: returns the input unchanged (the "w.o. defense" row)."""

    def purify(self, x: Tensor) -> Tensor:
        return x


class DefendedClassifier(nn.Module):
    """``classifier(defense(x))``: the model a user deploys, and what adaptive attacks see.

    Example:
        >>> from irad.defenses import Identity
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 10))
        >>> model = DefendedClassifier(Identity(), net)
        >>> model(torch.rand(2, 3, 8, 8)).shape
        torch.Size([2, 10])
    """

    def __init__(self, defense: Defense, classifier: nn.Module) -> None:
        super().__init__()
        self.defense = defense
        self.classifier = classifier

    @property
    def stochastic(self) -> bool:
        return bool(getattr(self.defense, "stochastic", False))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.defense(x))
