"""PaddleOCR's ``rec_postprocess.py``: ``CTCLabelDecode`` turns the model's probabilities into text."""
from __future__ import annotations

import numpy as np

from rosetta.charset import Charset


class CTCLabelDecode:
    """Greedy CTC over probabilities of shape (N, T, C) (or (T, C)): argmax, merge repeats, drop blanks.

    Confidence is the mean of the kept steps' max probabilities (PaddleOCR's), 0.0 for none.
    """

    def __init__(self, charset: Charset):
        self.charset = charset

    def __call__(self, probs: np.ndarray) -> list[tuple[str, float]]:
        probs = np.asarray(probs)
        if probs.ndim == 2:
            probs = probs[None]
        best = probs.argmax(axis=2)
        best_p = probs.max(axis=2)
        keep = np.ones(best.shape, dtype=bool)
        keep[:, 1:] = best[:, 1:] != best[:, :-1]
        keep &= best != 0
        out: list[tuple[str, float]] = []
        for idx, p, kept in zip(best, best_p, keep):
            text = self.charset.decode_indices(idx[kept].tolist())
            conf = float(p[kept].mean()) if kept.any() else 0.0
            out.append((text, conf))
        return out
