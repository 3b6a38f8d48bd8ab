"""Necks by the name ``model.neck`` gives, in PaddleOCR's files: ``reshape`` -> ``rnn.Im2Seq``."""
from __future__ import annotations

from torch import nn

from rosetta.modeling.necks.rnn import Im2Seq


def build_neck(name: str, in_channels: int) -> nn.Module:
    return {"reshape": Im2Seq}[name](in_channels)
