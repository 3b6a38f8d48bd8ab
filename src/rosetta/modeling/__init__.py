"""The Rosetta model, assembled from named parts as PaddleOCR does: backbone -> neck -> head.

In training mode the model returns CTC logits (N, T, C); in eval mode, probabilities (softmax),
which is also the exported ONNX contract.
"""
from __future__ import annotations

import torch
from torch import nn

from rosetta.modeling.backbones import build_backbone
from rosetta.modeling.heads import build_head
from rosetta.modeling.necks import build_neck


class RecModel(nn.Module):
    def __init__(self, backbone: nn.Module, neck: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone, self.neck, self.head = backbone, neck, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.neck(self.backbone(x)))


def build_model(model_cfg, num_classes: int) -> RecModel:
    backbone = build_backbone(model_cfg.backbone)
    neck = build_neck(model_cfg.neck, backbone.out_channels)
    head = build_head(model_cfg.head, neck.out_channels, num_classes)
    return RecModel(backbone, neck, head)


def param_groups(model: RecModel, head_l2_decay: float) -> list[dict]:
    """PaddleOCR's regularisation: coupled L2 on the head only, none elsewhere."""
    head = list(model.head.parameters())
    head_ids = {id(p) for p in head}
    rest = [p for p in model.parameters() if id(p) not in head_ids]
    return [{"params": rest, "weight_decay": 0.0}, {"params": head, "weight_decay": head_l2_decay}]
