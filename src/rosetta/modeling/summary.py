"""``rosetta summary``: parameter counts, forward FLOPs and output shape of the configured model."""
from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from rosetta.config import Config
from rosetta.modeling import build_model
from rosetta_infer.charset import Charset


def model_summary(cfg: Config) -> dict:
    charset = Charset.from_config(cfg.charset)
    model = build_model(cfg.model, charset.num_classes).eval()
    x = torch.zeros(1, 3, cfg.model.image_height, cfg.model.image_width)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        y = model(x)
    return {
        "backbone": cfg.model.backbone.key,
        "params": sum(p.numel() for p in model.parameters()),
        "backbone_params": sum(p.numel() for p in model.backbone.parameters()),
        "flops": int(counter.get_total_flops()),  # 2 x multiply-accumulates, convs and matmuls
        "input_shape": list(x.shape),
        "output_shape": list(y.shape),
        "num_classes": charset.num_classes,
    }


def format_summary(s: dict) -> str:
    return "\n".join([
        f"backbone         {s['backbone']}",
        f"params           {s['params']:,} ({s['params'] / 1e6:.2f} M)",
        f"backbone params  {s['backbone_params']:,} ({s['backbone_params'] / 1e6:.2f} M)",
        f"FLOPs            {s['flops'] / 1e9:.3f} G at {'x'.join(map(str, s['input_shape']))}",
        f"output shape     {s['output_shape']} (batch, time steps, classes incl. blank)",
    ])
