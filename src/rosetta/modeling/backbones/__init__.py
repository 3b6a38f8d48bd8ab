"""Backbones by the names params.yaml uses."""
from __future__ import annotations

from torch import nn

from rosetta.modeling.backbones.rec_mobilenet_v3 import MobileNetV3
from rosetta.modeling.backbones.rec_resnet_vd import ResNetVd


def build_backbone(model_cfg, in_channels: int = 3) -> nn.Module:
    if model_cfg.backbone == "resnet34_vd":
        return ResNetVd(in_channels, layers=34)
    mv3 = model_cfg.mobilenet_v3
    return MobileNetV3(in_channels, model_name=mv3.model_name, scale=mv3.scale)
