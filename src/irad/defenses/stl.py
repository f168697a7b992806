"""STL (Sun et al., CVPR 2019): project the input onto a convolutional sparse code learned on
clean images, and reconstruct it.

The image's Tikhonov low-pass is kept; its detail is coded by FISTA over the clean dictionary and
re-synthesised (:mod:`irad.models.sparse_coding`). Detail that the dictionary cannot represent
sparsely, such as most of an adversarial perturbation, is dropped. The forward runs a fixed number
of iterations, so it is deterministic and differentiable: the adaptive threat differentiates
through the whole solver.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from irad.checks import check_positive, check_positive_int
from irad.defenses.base import Defense
from irad.defenses.trained import load_trained
from irad.models.sparse_coding import ConvSparseCoder

TRAIN_COMMAND = "irad train-stl --preset cpu"


class STL(Defense):
    """Sparse transformation layer: ``x_low + D · FISTA(x_high)``.

    Args:
        checkpoint: a :class:`~irad.models.sparse_coding.ConvSparseCoder`, a checkpoint folder or
            prefix written by ``irad train-stl``, or a bundled name (``"cifar10"``).
        iterations: FISTA iterations (default: the checkpoint's).
        lmbda: sparsity weight λ (default: the checkpoint's, the one it was trained with).

    Shape:
        - Input: ``(B, 3, H, W)`` in [0, 1], any H and W.
        - Output: ``(B, 3, H, W)`` in [0, 1].

    Example:
        >>> from irad.models.sparse_coding import SparseCodingConfig
        >>> stl = STL(ConvSparseCoder(SparseCodingConfig.from_preset("tiny")))
        >>> stl(torch.rand(2, 3, 16, 16)).shape
        torch.Size([2, 3, 16, 16])
    """

    stochastic = False
    differentiable = True

    def __init__(
        self,
        checkpoint: Any = "cifar10",
        *,
        iterations: int | None = None,
        lmbda: float | None = None,
    ) -> None:
        super().__init__()
        self.coder: ConvSparseCoder = load_trained(
            ConvSparseCoder, checkpoint, "stl", TRAIN_COMMAND
        )
        self.source = str(checkpoint) if not isinstance(checkpoint, ConvSparseCoder) else None
        c = self.coder.config
        self.iterations = (
            c.iterations
            if iterations is None
            else check_positive_int(iterations, "iterations (FISTA steps)")
        )
        self.lmbda = (
            c.lmbda if lmbda is None else check_positive(lmbda, "lmbda (sparsity weight λ)")
        )

    def purify(self, x: Tensor) -> Tensor:
        return self.coder(x, self.iterations, self.lmbda)

    def config(self) -> dict[str, Any]:
        c = self.coder.config
        return {
            "name": "stl",
            "checkpoint": self.source,
            "iterations": self.iterations,
            "lmbda": self.lmbda,
            "model": {
                "preset": c.preset,
                "atoms": c.atoms,
                "kernel_size": c.kernel_size,
                "tikhonov": c.tikhonov,
            },
        }
