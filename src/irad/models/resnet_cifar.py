"""The CIFAR ResNet of He et al. (2016), §4.2: ResNet-20/32/44/56 with the "option A" shortcut.

Parameter names follow Yerlan Idelbayev's ``akamaster/pytorch_resnet_cifar10`` (``conv1``,
``bn1``, ``layer{1,2,3}.{i}.{conv1,bn1,conv2,bn2}``, ``linear``) so its published checkpoints load
unchanged (see :func:`irad.models.load_classifier`).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class ShortcutA(nn.Module):
    """Parameter-free shortcut ("option A"): subsample by 2 and zero-pad the new channels.

    Shape:
        - Input: ``(B, C, H, W)``.
        - Output: ``(B, C + 2 * pad, ceil(H / 2), ceil(W / 2))``.
    """

    def __init__(self, pad: int) -> None:
        super().__init__()
        self.pad = pad

    def forward(self, x: Tensor) -> Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))

    def extra_repr(self) -> str:
        return f"pad={self.pad}"


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, plus the shortcut, then ReLU (He et al. 2016).

    ``shortcut`` is used when the shape changes: ``"A"`` (parameter-free subsample and zero-pad,
    the CIFAR ResNet-20/56 of §4.2) or ``"B"`` (1x1 conv + BN, as in ResNet-18/34); otherwise
    the shortcut is the identity. State-dict names: ``conv1, bn1, conv2, bn2`` and, for B,
    ``shortcut.0`` (conv) and ``shortcut.1`` (BN).
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1, shortcut: str = "A") -> None:
        super().__init__()
        if shortcut not in ("A", "B"):
            raise ValueError(f"shortcut must be 'A' or 'B', got {shortcut!r}")
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            if shortcut == "A":
                # Option A assumes the channel count doubles, as it does between the stages.
                self.shortcut = ShortcutA((planes - in_planes) // 2)
            else:
                self.shortcut = nn.Sequential(
                    nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                    nn.BatchNorm2d(planes),
                )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for 32x32 images: 16-channel stem, three stages of ``n`` blocks, linear head.

    Args:
        depth: 20, 32, 44, 56, 110, ... (``depth = 6 n + 2``).
        num_classes: number of logits.

    Shape:
        - Input: ``(B, 3, H, W)``, already normalised (wrap in :class:`irad.models.Classifier`).
        - Output: ``(B, num_classes)``.

    Example:
        >>> import torch
        >>> net = CifarResNet(20)
        >>> net(torch.randn(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    def __init__(self, depth: int = 20, num_classes: int = 10) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6 != 0:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 44, 56, ...), got {depth}")
        n = (depth - 2) // 6
        self.depth = depth
        self.conv1 = nn.Conv2d(3, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._stage(16, 16, n, stride=1)
        self.layer2 = self._stage(16, 32, n, stride=2)
        self.layer3 = self._stage(32, 64, n, stride=2)
        self.linear = nn.Linear(64, num_classes)
        # The reference implementation's initialisation: He-normal for conv and linear weights.
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.kaiming_normal_(m.weight)

    @staticmethod
    def _stage(in_planes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
        layers = [BasicBlock(in_planes, planes, stride)]
        layers += [BasicBlock(planes, planes, 1) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)

    def blocks(self) -> list[nn.Module]:
        """The residual blocks in forward order (``3 n`` of them); each outputs a post-ReLU map.

        Read by :meth:`irad.models.Classifier.blocks` (decision paths, :mod:`irad.analysis`).
        """
        return [block for stage in (self.layer1, self.layer2, self.layer3) for block in stage]
