"""Heads by the name ``model.head`` gives, one file each as in PaddleOCR: ``ctc`` -> ``rec_ctc_head.CTCHead``."""
from __future__ import annotations

from torch import nn

from rosetta.modeling.heads.rec_ctc_head import CTCHead


def build_head(name: str, in_channels: int, num_classes: int) -> nn.Module:
    return {"ctc": CTCHead}[name](in_channels, num_classes)
