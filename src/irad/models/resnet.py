"""CIFAR ResNet-18/34: the ImageNet ResNet's four stages with a 3x3 stem and no max-pool.

This is the variant most CIFAR robustness papers use (Kuang Liu's ``pytorch-cifar`` layout:
``conv1``, ``bn1``, ``layer{1..4}.{i}.{conv1,bn1,conv2,bn2,shortcut.{0,1}}``, ``linear``), so
checkpoints in that layout load by name.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from irad.models.resnet_cifar import BasicBlock


class ResNet(nn.Module):
    """ResNet with BasicBlocks for small images (stem: 3x3 conv, stride 1, no max-pool).

    Args:
        blocks: blocks per stage, ``(2, 2, 2, 2)`` for ResNet-18, ``(3, 4, 6, 3)`` for ResNet-34.
        num_classes: number of logits.

    Shape:
        - Input: ``(B, 3, H, W)``, already normalised (wrap in :class:`irad.models.Classifier`).
        - Output: ``(B, num_classes)``.

    Example:
        >>> import torch
        >>> net = ResNet((2, 2, 2, 2))
        >>> net(torch.randn(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    def __init__(self, blocks: tuple[int, int, int, int], num_classes: int = 10) -> None:
        super().__init__()
        if len(blocks) != 4:
            raise ValueError(f"blocks must give 4 stage lengths, got {blocks}")
        self.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.layer1 = self._stage(64, 64, blocks[0], stride=1)
        self.layer2 = self._stage(64, 128, blocks[1], stride=2)
        self.layer3 = self._stage(128, 256, blocks[2], stride=2)
        self.layer4 = self._stage(256, 512, blocks[3], stride=2)
        self.linear = nn.Linear(512, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @staticmethod
    def _stage(in_planes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
        layers = [BasicBlock(in_planes, planes, stride, shortcut="B")]
        layers += [BasicBlock(planes, planes, 1, shortcut="B") for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)
