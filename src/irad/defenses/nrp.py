"""NRP (Naseer et al., CVPR 2020): a purifier network trained against self-supervised
perturbations.

The purifier (:class:`irad.models.nrp.Purifier`) was trained to map images perturbed to distort
a frozen network's features back to the clean image and its features
(:mod:`irad.train.nrp`); at test time it is one forward pass, deterministic and differentiable.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from irad.defenses.base import Defense
from irad.defenses.trained import load_trained
from irad.models.nrp import Purifier

TRAIN_COMMAND = "irad train-nrp --preset cpu --extractor resnet20-12fca82f.th"


class NRP(Defense):
    """Neural representation purifier: ``P(x)``, clamped to [0, 1].

    Args:
        checkpoint: a :class:`~irad.models.nrp.Purifier`, a checkpoint folder or prefix written
            by ``irad train-nrp``, or a bundled name (``"cifar10"``).

    Shape:
        - Input: ``(B, 3, H, W)`` in [0, 1], any H and W.
        - Output: ``(B, 3, H, W)`` in [0, 1].

    Example:
        >>> from irad.models.nrp import PurifierConfig
        >>> nrp = NRP(Purifier(PurifierConfig.from_preset("tiny")))
        >>> nrp(torch.rand(2, 3, 16, 16)).shape
        torch.Size([2, 3, 16, 16])
    """

    stochastic = False
    differentiable = True

    def __init__(self, checkpoint: Any = "cifar10") -> None:
        super().__init__()
        self.purifier: Purifier = load_trained(Purifier, checkpoint, "nrp", TRAIN_COMMAND)
        self.source = str(checkpoint) if not isinstance(checkpoint, Purifier) else None

    def purify(self, x: Tensor) -> Tensor:
        return self.purifier(x)

    def config(self) -> dict[str, Any]:
        c = self.purifier.config
        return {
            "name": "nrp",
            "checkpoint": self.source,
            "model": {
                "preset": c.preset,
                "channels": c.channels,
                "blocks": c.blocks,
                "block": c.block,
            },
        }
