"""ResNets on torchvision's blocks: the CIFAR BasicBlock net of report 000, ResNet-18/50 of report 002."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet, conv1x1

from sweeper.models.activations import Activation, swap_relus
from sweeper.models.registry import register_model


class _BasicBlock(BasicBlock):
    """torchvision's BasicBlock with one activation module per call site."""

    # torchvision applies `self.relu` twice; a second module gives PReLU its own slope there
    # and lets hooks tell the two activations apart. Same parameters otherwise.
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.relu2 = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        """Residual block: conv-bn-act-conv-bn, add the shortcut, act."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + identity)


class _Bottleneck(Bottleneck):
    """torchvision's Bottleneck with one activation module per call site (it reuses one thrice)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.relu2 = nn.ReLU()
        self.relu3 = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        """Bottleneck block: 1x1, 3x3, 1x1 convs with BN, add the shortcut, act."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu3(out + identity)


def _stage(cin: int, width: int, blocks: int, stride: int) -> nn.Sequential:
    # 1x1 conv + BN shortcut whenever the block changes shape (channels or resolution).
    downsample = None
    if stride != 1 or cin != width:
        downsample = nn.Sequential(conv1x1(cin, width, stride), nn.BatchNorm2d(width))
    layers = [_BasicBlock(cin, width, stride, downsample)]
    layers += [_BasicBlock(width, width) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class CifarResNet(nn.Module):
    """3x3 stem, stages of BasicBlocks (stride 1, then 2), global average pool, dropout, linear."""

    def __init__(
        self, stem: int, widths: Sequence[int], blocks: Sequence[int], dropout: float, num_classes: int
    ) -> None:
        super().__init__()
        if len(widths) != len(blocks):
            raise ValueError(f"widths has {len(widths)} stages but blocks has {len(blocks)}")
        self.conv1 = nn.Conv2d(3, stem, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU()
        stages, cin = [], stem
        for i, (width, count) in enumerate(zip(widths, blocks)):
            stages.append(_stage(cin, width, count, stride=1 if i == 0 else 2))
            cin = width
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Logits for a batch of images."""
        x = self.stages(self.relu(self.bn1(self.conv1(x))))
        return self.fc(self.dropout(torch.flatten(self.pool(x), 1)))


@register_model
def resnet_basic(
    *,
    activation: Activation = nn.ReLU,
    num_classes: int = 10,
    stem: int = 32,
    widths: Sequence[int] = (64, 128, 128),
    blocks: Sequence[int] = (2, 2, 2),
    dropout: float = 0.0,
) -> nn.Module:
    """The residual network of report 000 (Table 2: 1,266,986 params; section 7 widths 128,128,256)."""
    model = CifarResNet(stem, list(widths), list(blocks), dropout, num_classes)
    return swap_relus(model, activation)


def _torchvision_resnet(
    block: type[BasicBlock | Bottleneck], layers: list[int], activation: Activation, num_classes: int, dropout: float
) -> nn.Module:
    # torchvision's ResNet class with our per-call-site blocks; the resnet18/resnet50 builder
    # functions hard-wire the stock blocks, so the class is called directly with their layers.
    model = ResNet(block, layers, num_classes=num_classes)
    # 32x32 inputs: a 7x7/2 stem plus a max-pool would leave 8x8 before the first stage.
    model.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")  # as torchvision
    model.maxpool = nn.Identity()
    model.fc = nn.Sequential(nn.Dropout(dropout), model.fc)
    return swap_relus(model, activation)


@register_model
def resnet18(*, activation: Activation = nn.ReLU, num_classes: int = 10, dropout: float = 0.2) -> nn.Module:
    """torchvision's ResNet-18 adapted to 32x32 inputs (report 002: 11.17M params)."""
    return _torchvision_resnet(_BasicBlock, [2, 2, 2, 2], activation, num_classes, dropout)


@register_model
def resnet50(*, activation: Activation = nn.ReLU, num_classes: int = 10, dropout: float = 0.2) -> nn.Module:
    """torchvision's ResNet-50 adapted to 32x32 inputs (report 002: 23.52M params)."""
    return _torchvision_resnet(_Bottleneck, [3, 4, 6, 3], activation, num_classes, dropout)
