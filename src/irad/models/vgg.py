"""VGG with batch norm for 32x32 images: the VGG-16 conv stack and a single 512 -> classes head.

Layout as in Kuang Liu's ``pytorch-cifar`` (``features.{i}``, ``classifier``), so checkpoints in
that layout load by name.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

#: Output channels of each 3x3 conv; "M" is a 2x2 max-pool.
VGG16_LAYOUT: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M",
)  # fmt: skip


class VGG(nn.Module):
    """VGG-bn: conv3x3-BN-ReLU stacks with max-pools, global average pool, one linear layer.

    Args:
        layout: conv widths and ``"M"`` for max-pools (default: VGG-16).
        num_classes: number of logits.

    Shape:
        - Input: ``(B, 3, H, W)``, already normalised (wrap in :class:`irad.models.Classifier`);
          H and W at least 32 (five 2x2 pools).
        - Output: ``(B, num_classes)``.

    Example:
        >>> import torch
        >>> net = VGG()
        >>> net(torch.randn(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    def __init__(self, layout: Sequence[int | str] = VGG16_LAYOUT, num_classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for item in layout:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                width = int(item)
                layers += [
                    nn.Conv2d(channels, width, 3, padding=1),
                    nn.BatchNorm2d(width),
                    nn.ReLU(),
                ]
                channels = width
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        out = self.features(x)
        # At 32x32 the map is 1x1 here; pooling also accepts larger inputs.
        out = nn.functional.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.classifier(out)
