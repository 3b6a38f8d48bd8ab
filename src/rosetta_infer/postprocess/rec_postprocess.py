"""PaddleOCR's ``rec_postprocess.py``: ``CTCLabelDecode`` turns the model's probabilities into text and a word
confidence by a named rule."""
from __future__ import annotations

import numpy as np

from rosetta_infer.charset import Charset
from rosetta_infer.errors import RosettaError


def _geometric(step_probs: np.ndarray) -> float:
    # Through logs: a long word's product underflows; a step of probability 0 makes the word's 0.
    with np.errstate(divide="ignore"):
        return float(np.exp(np.log(step_probs.astype(np.float64)).mean()))


# The word's confidence from the max probabilities of its kept steps (one per character): ``mean`` (PaddleOCR's),
# ``min`` (the least sure character: one doubtful letter makes a doubtful word) or ``geometric`` (their geometric
# mean, the greedy path's probability per character). ``rosetta_infer.settings.ConfidenceRule`` names the same.
CONFIDENCE_RULES = {"mean": lambda p: float(p.mean()), "min": lambda p: float(p.min()), "geometric": _geometric}


class CTCLabelDecode:
    """Greedy CTC over probabilities of shape (N, T, C) (or (T, C)): argmax, merge repeats, drop blanks; the
    confidence is the kept steps' by ``rule`` (``CONFIDENCE_RULES``), 0.0 for no character."""

    def __init__(self, charset: Charset, rule: str = "mean"):
        if rule not in CONFIDENCE_RULES:
            raise RosettaError(f"confidence rule {rule!r} is unknown; use one of {', '.join(CONFIDENCE_RULES)}")
        self.charset = charset
        self.rule = rule
        self._confidence = CONFIDENCE_RULES[rule]

    def __call__(self, probs: np.ndarray) -> list[tuple[str, float]]:
        probs = np.asarray(probs)
        if probs.ndim == 2:
            probs = probs[None]
        best = probs.argmax(axis=2)
        best_p = probs.max(axis=2)
        keep = np.ones(best.shape, dtype=bool)
        keep[:, 1:] = best[:, 1:] != best[:, :-1]
        keep &= best != 0
        return [(self.charset.decode_indices(idx[kept].tolist()), self._confidence(p[kept]) if kept.any() else 0.0)
                for idx, p, kept in zip(best, best_p, keep)]
