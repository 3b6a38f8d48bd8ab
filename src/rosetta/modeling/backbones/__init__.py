"""Backbones by the ``name`` of ``model.backbone``, as PaddleOCR's ``build_backbone`` picks them."""
from __future__ import annotations

from torch import nn

from rosetta.config import MobileNetV3Config, ResNetConfig
from rosetta.modeling.backbones.rec_mobilenet_v3 import MobileNetV3
from rosetta.modeling.backbones.rec_resnet_vd import ResNetVd


def build_backbone(cfg: MobileNetV3Config | ResNetConfig, in_channels: int = 3) -> nn.Module:
    if isinstance(cfg, ResNetConfig):
        return ResNetVd(in_channels, layers=cfg.layers)
    return MobileNetV3(in_channels, model_name=cfg.model_name, scale=cfg.scale)
