"""The ``Defense`` interface: an ``nn.Module`` from images in [0, 1] to images in [0, 1].

A defense declares two facts the evaluation harness relies on:

* ``stochastic``: whether two calls on the same input may differ (then adaptive attacks use
  expectation over transformation, and AutoAttack its ``rand`` version);
* ``differentiable``: whether its forward has useful gradients (if not, an adaptive attack needs
  BPDA or a differentiable surrogate, see :meth:`Defense.differentiable_surrogate`).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from irad.checks import check_images


class Defense(nn.Module):
    """Base class of every input-transformation defense.

    Subclasses implement :meth:`purify` only; ``forward`` validates the input first and clamps
    the output to [0, 1].

    Shape:
        - Input: ``(B, 3, H, W)``, float, values in [0, 1].
        - Output: ``(B, 3, H, W)``, same dtype, values in [0, 1].
    """

    #: Two calls on the same input may give different outputs.
    stochastic: bool = False
    #: The forward pass has informative gradients with respect to the input.
    differentiable: bool = True

    def forward(self, x: Tensor) -> Tensor:
        check_images(x, "defense input")
        out = self.purify(x)
        return out.clamp(0.0, 1.0)

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
