"""MobileNetV3 (large or small, scale 0.35-1.25) for recognition, as PaddleOCR's ``rec_mobilenet_v3.py``.

The three downsampling blocks stride (2, 1), keeping width, so 3x32x100 gives Cx1x25. The SE gate
uses Paddle's hardsigmoid (slope 0.2, offset 0.5), not torch's (slope 1/6): weights trained either
way are not interchangeable.
"""
from __future__ import annotations

import torch
from torch import nn

from rosetta.modeling.backbones.depthwise import DepthwiseConv2d

# kernel, expansion, out channels, SE, activation, stride
LARGE = [
    (3, 16, 16, False, "relu", 1),
    (3, 64, 24, False, "relu", (2, 1)),
    (3, 72, 24, False, "relu", 1),
    (5, 72, 40, True, "relu", (2, 1)),
    (5, 120, 40, True, "relu", 1),
    (5, 120, 40, True, "relu", 1),
    (3, 240, 80, False, "hardswish", 1),
    (3, 200, 80, False, "hardswish", 1),
    (3, 184, 80, False, "hardswish", 1),
    (3, 184, 80, False, "hardswish", 1),
    (3, 480, 112, True, "hardswish", 1),
    (3, 672, 112, True, "hardswish", 1),
    (5, 672, 160, True, "hardswish", (2, 1)),
    (5, 960, 160, True, "hardswish", 1),
    (5, 960, 160, True, "hardswish", 1),
]
# PaddleOCR's recognition configs pass small_stride [1, 2, 2, 2]: with a stride-2 first block the
# height would reach 1 before the final 2x2 pool.
SMALL = [
    (3, 16, 16, True, "relu", 1),
    (3, 72, 24, False, "relu", (2, 1)),
    (3, 88, 24, False, "relu", 1),
    (5, 96, 40, True, "hardswish", (2, 1)),
    (5, 240, 40, True, "hardswish", 1),
    (5, 240, 40, True, "hardswish", 1),
    (5, 120, 48, True, "hardswish", 1),
    (5, 144, 48, True, "hardswish", 1),
    (5, 288, 96, True, "hardswish", (2, 1)),
    (5, 576, 96, True, "hardswish", 1),
    (5, 576, 96, True, "hardswish", 1),
]
SQUEEZE = {"large": 960, "small": 576}


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class PaddleHardSigmoid(nn.Module):
    """clip(slope * x + offset, 0, 1) with Paddle's defaults for the SE gate."""

    def __init__(self, slope: float = 0.2, offset: float = 0.5):
        super().__init__()
        self.slope, self.offset = slope, offset

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(x * self.slope + self.offset, 0.0, 1.0)


def _act(name: str | None) -> nn.Module:
    return {"relu": nn.ReLU(inplace=True), "hardswish": nn.Hardswish(), None: nn.Identity()}[name]


class ConvBNLayer(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride=1, groups: int = 1,
                 act: str | None = None):
        padding = (kernel_size - 1) // 2
        depthwise = groups > 1 and groups == in_channels == out_channels
        super().__init__(
            DepthwiseConv2d(in_channels, kernel_size, stride=stride, padding=padding) if depthwise else
            nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, groups=groups,
                      bias=False),
            nn.BatchNorm2d(out_channels),
            _act(act),
        )


class SEModule(nn.Module):
    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.conv1 = nn.Conv2d(channels, channels // reduction, 1)
        self.conv2 = nn.Conv2d(channels // reduction, channels, 1)
        self.gate = PaddleHardSigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.conv2(torch.relu(self.conv1(self.pool(x)))))


class ResidualUnit(nn.Module):
    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, kernel_size: int, stride,
                 use_se: bool, act: str):
        super().__init__()
        self.use_shortcut = stride == 1 and in_channels == out_channels
        self.expand_conv = ConvBNLayer(in_channels, mid_channels, 1, act=act)
        self.bottleneck_conv = ConvBNLayer(mid_channels, mid_channels, kernel_size, stride=stride,
                                           groups=mid_channels, act=act)
        self.mid_se = SEModule(mid_channels) if use_se else nn.Identity()
        self.linear_conv = ConvBNLayer(mid_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.linear_conv(self.mid_se(self.bottleneck_conv(self.expand_conv(x))))
        return x + y if self.use_shortcut else y


class MobileNetV3(nn.Module):
    def __init__(self, in_channels: int = 3, model_name: str = "large", scale: float = 0.5):
        super().__init__()
        cfg = {"large": LARGE, "small": SMALL}[model_name]
        inplanes = make_divisible(16 * scale)
        self.conv1 = ConvBNLayer(in_channels, inplanes, 3, stride=2, act="hardswish")
        blocks = []
        for k, exp, c, se, act, s in cfg:
            out = make_divisible(scale * c)
            blocks.append(ResidualUnit(inplanes, make_divisible(scale * exp), out, k, s, se, act))
            inplanes = out
        self.blocks = nn.Sequential(*blocks)
        self.out_channels = make_divisible(scale * SQUEEZE[model_name])
        self.conv2 = ConvBNLayer(inplanes, self.out_channels, 1, act="hardswish")
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.conv2(self.blocks(self.conv1(x))))
