"""Calibration of a word confidence: how often a reading of confidence c is right, against c. The expected
calibration error over equal-width bins (Guo et al., 2017) and the bins a reliability diagram draws. Pure
functions: no files, no models."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

BINS = 10  # equal-width confidence bins over [0, 1], the usual choice for ECE


@dataclass(frozen=True)
class CalibrationBin:
    """The readings whose confidence falls in ``[low, high)`` (the last bin includes 1.0)."""

    low: float
    high: float
    count: int
    confidence: float  # their mean confidence
    accuracy: float  # the share of them read right


def reliability_bins(confidences: Sequence[float], correct: Sequence[bool], bins: int = BINS
                     ) -> list[CalibrationBin]:
    """The non-empty bins of ``bins`` equal-width ones, lowest first."""
    if len(confidences) != len(correct):
        raise ValueError(f"{len(confidences)} confidences for {len(correct)} outcomes")
    members: list[list[int]] = [[] for _ in range(bins)]
    for i, c in enumerate(confidences):
        members[min(int(c * bins), bins - 1)].append(i)
    return [CalibrationBin(b / bins, (b + 1) / bins, len(m), sum(confidences[i] for i in m) / len(m),
                           sum(bool(correct[i]) for i in m) / len(m))
            for b, m in enumerate(members) if m]


def expected_calibration_error(bins: Sequence[CalibrationBin]) -> float:
    """The bins' gaps between accuracy and mean confidence, weighted by their share of the readings; 0.0 for
    none. 0 is a confidence that means what it says: of readings at 0.9, nine in ten are right."""
    total = sum(b.count for b in bins)
    return sum(b.count * abs(b.accuracy - b.confidence) for b in bins) / total if total else 0.0
