"""PaddleOCR's ``rnn.py`` necks: ``Im2Seq`` (``encoder_type: reshape``, Rosetta's neck) turns (N, C, 1, W)
features into a (N, W, C) sequence."""
from __future__ import annotations

import torch
from torch import nn


class Im2Seq(nn.Module):
    def __init__(self, in_channels: int):
        super().__init__()
        self.out_channels = in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[2] != 1:
            raise ValueError(f"the reshape neck needs feature height 1, got {x.shape[2]}: "
                             "the input height must be 32")
        return x.squeeze(2).transpose(1, 2)
