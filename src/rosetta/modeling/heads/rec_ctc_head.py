"""PaddleOCR's CTC head (``rec_ctc_head.py``): one Linear C -> classes, softmax outside training."""
from __future__ import annotations

import math

import torch
from torch import nn


class CTCHead(nn.Module):
    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()
        self.fc = nn.Linear(in_channels, num_classes)
        # PaddleOCR's get_para_bias_attr: weight and bias uniform(+-1/sqrt(fan_in)).
        stdv = 1.0 / math.sqrt(in_channels)
        nn.init.uniform_(self.fc.weight, -stdv, stdv)
        nn.init.uniform_(self.fc.bias, -stdv, stdv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.fc(x)
        return logits if self.training else torch.softmax(logits, dim=2)
