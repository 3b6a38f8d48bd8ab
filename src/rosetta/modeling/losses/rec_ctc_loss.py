"""CTC loss with PaddleOCR's reduction: per-sample CTC (not divided by label length), batch mean."""
from __future__ import annotations

import torch
from torch import nn


class CTCLoss(nn.Module):
    def __init__(self, blank: int = 0, zero_infinity: bool = False):
        super().__init__()
        self.ctc = nn.CTCLoss(blank=blank, reduction="none", zero_infinity=zero_infinity)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor, target_lengths: torch.Tensor) -> torch.Tensor:
        """``logits`` (N, T, C) from the model in training mode; ``targets`` (N, S) padded with 0."""
        log_probs = logits.float().log_softmax(2).transpose(0, 1)  # (T, N, C), CTC in fp32 under AMP
        n, t = logits.shape[0], logits.shape[1]
        input_lengths = torch.full((n,), t, dtype=torch.long, device=logits.device)
        return self.ctc(log_probs, targets, input_lengths, target_lengths).mean()
