"""The classifier interface: images in [0, 1], NCHW in; logits out. Normalisation lives inside."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from irad.checks import check_images, check_logits

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, with the statistics stored as buffers."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


class Classifier(nn.Module):
    """Wrap any ``nn.Module`` into an irad classifier.

    The wrapper checks the input (float, NCHW, 3 channels, [0, 1]), applies the network's own
    normalisation, and checks that the network returns ``(B, num_classes)`` logits.

    Args:
        net: the network, taking *normalised* images.
        mean, std: per-channel normalisation the network was trained with (``None``: none).
        num_classes: expected number of logits, checked on every call.
        name: a label recorded with results.
        config: how to rebuild the network (registry name and arguments), saved with weights.

    Shape:
        - Input: ``(B, 3, H, W)`` in [0, 1].
        - Output: ``(B, num_classes)`` logits.

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 10))
        >>> clf = Classifier(net, mean=None, std=None, num_classes=10)
        >>> clf(torch.rand(2, 3, 4, 4)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        net: nn.Module,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        num_classes: int | None = None,
        name: str = "custom",
        config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.net = net
        self.normalize = Normalize(mean, std) if mean is not None and std is not None else None
        self.num_classes = num_classes
        self.name = name
        self.config = dict(config or {"name": name})
        if mean is not None:
            self.config.setdefault("mean", list(mean))
            self.config.setdefault("std", list(std) if std is not None else None)

    def forward(self, x: Tensor) -> Tensor:
        check_images(x, "classifier input")
        if self.normalize is not None:
            x = self.normalize(x)
        return check_logits(self.net(x), x.shape[0], self.num_classes)


def as_classifier(
    module: nn.Module,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    num_classes: int | None = None,
    name: str = "custom",
) -> Classifier:
    """Return ``module`` if it already is a :class:`Classifier`, else wrap it."""
    if isinstance(module, Classifier):
        return module
    return Classifier(module, mean=mean, std=std, num_classes=num_classes, name=name)
