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
        out: list[tuple[str, float]] = []
        for idx, p in zip(best, best_p):
            keep = np.ones(len(idx), dtype=bool)
            keep[1:] = idx[1:] != idx[:-1]
            keep &= idx != 0
            text = self.charset.decode_indices(idx[keep].tolist())
            conf = float(p[keep].mean()) if keep.any() else 0.0
            out.append((text, conf))
        return out
