"""ResNet34_vd for recognition, as PaddleOCR's ``rec_resnet_vd.py`` builds it.

Height is reduced 32 -> 1 while width keeps 4x resolution (strides (2, 1) in stages 2-4), so a
3x32x100 image gives 512x1x25 features. "vd" shortcuts average-pool before their 1x1 conv.
"""
from __future__ import annotations

import torch
from torch import nn


class ConvBNLayer(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride=1,
                 act: bool = False, is_vd_mode: bool = False):
        layers: list[nn.Module] = []
        if is_vd_mode:
            # Paddle's vd trick: downsample by averaging, then a stride-1 1x1 conv sees every pixel.
            layers.append(nn.AvgPool2d(kernel_size=stride, stride=stride, padding=0, ceil_mode=True))
            stride = 1
        layers += [nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                             padding=(kernel_size - 1) // 2, bias=False),
                   nn.BatchNorm2d(out_channels)]
        if act:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class BasicBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride, shortcut: bool, if_first: bool):
        super().__init__()
        self.conv0 = ConvBNLayer(in_channels, out_channels, 3, stride=stride, act=True)
        self.conv1 = ConvBNLayer(out_channels, out_channels, 3)
        self.short = None if shortcut else ConvBNLayer(
            in_channels, out_channels, 1, stride=stride, is_vd_mode=not if_first and stride[0] != 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        short = x if self.short is None else self.short(x)
        return torch.relu(short + self.conv1(self.conv0(x)))


class ResNetVd(nn.Module):
    DEPTHS = {34: [3, 4, 6, 3]}

    def __init__(self, in_channels: int = 3, layers: int = 34):
        super().__init__()
        depth = self.DEPTHS[layers]
        num_filters = [64, 128, 256, 512]
        num_channels = [64, 64, 128, 256]
        self.stem = nn.Sequential(
            ConvBNLayer(in_channels, 32, 3, act=True),
            ConvBNLayer(32, 32, 3, act=True),
            ConvBNLayer(32, 64, 3, act=True),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        )
        blocks = []
        for stage, n in enumerate(depth):
            for i in range(n):
                stride = (2, 1) if i == 0 and stage != 0 else (1, 1)
                blocks.append(BasicBlock(num_channels[stage] if i == 0 else num_filters[stage],
                                         num_filters[stage], stride, shortcut=i != 0,
                                         if_first=stage == 0 and i == 0))
        self.blocks = nn.Sequential(*blocks)
        self.out_pool = nn.MaxPool2d(kernel_size=2, stride=2, padding=0)
        self.out_channels = num_filters[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_pool(self.blocks(self.stem(x)))
