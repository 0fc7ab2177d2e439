"""Classifiers for the small-batch experiments: the paper's CIFAR networks and a small CNN for the CPU mode.

``resnet18``, ``resnet101`` and ``densenet121`` are torchvision's architectures (built with ``weights=None``: no
download, random init) converted to their usual CIFAR form: the 7x7 stride-2 stem becomes a 3x3 stride-1
convolution and the stem max-pool is removed, so a 32x32 image keeps its resolution into the first stage (as in
the widely used ``pytorch-cifar`` models the paper's numbers are comparable with). ``smallcnn`` is four 3x3
conv-BN-ReLU layers and a linear head (about 30k parameters): what the offline synthetic mode trains.
All models keep BatchNorm, because the paper's networks do and because BN under batch 2 is part of the
small-batch story.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["MODELS", "build_model", "SmallCNN"]

MODELS = ("resnet18", "resnet101", "densenet121", "smallcnn")


class SmallCNN(nn.Module):
    """conv(3->w)-conv(w->w)-pool-conv(w->2w)-pool-conv(2w->2w), each 3x3 + BN + ReLU, global average pool, linear."""

    def __init__(self, num_classes: int = 10, width: int = 16) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

        self.features = nn.Sequential(
            *block(3, width), *block(width, width), nn.MaxPool2d(2),
            *block(width, 2 * width), nn.MaxPool2d(2), *block(2 * width, 2 * width),
            nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def _cifar_resnet(depth: int, num_classes: int) -> nn.Module:
    from torchvision.models import resnet18, resnet101

    net = (resnet18 if depth == 18 else resnet101)(weights=None, num_classes=num_classes)
    net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    return net


def _cifar_densenet121(num_classes: int) -> nn.Module:
    from torchvision.models import densenet121

    net = densenet121(weights=None, num_classes=num_classes)
    stem_out = net.features.conv0.out_channels
    net.features.conv0 = nn.Conv2d(3, stem_out, kernel_size=3, stride=1, padding=1, bias=False)
    net.features.pool0 = nn.Identity()
    return net


def build_model(name: str, num_classes: int, *, width: int = 16) -> nn.Module:
    """One of :data:`MODELS`; ``width`` only applies to ``smallcnn``. Initialisation follows torch's generator."""
    if name == "resnet18":
        return _cifar_resnet(18, num_classes)
    if name == "resnet101":
        return _cifar_resnet(101, num_classes)
    if name == "densenet121":
        return _cifar_densenet121(num_classes)
    if name == "smallcnn":
        return SmallCNN(num_classes, width)
    raise ValueError(f"unknown model {name!r}: use one of {', '.join(MODELS)}")
