"""Calibration of the word confidence: expected calibration error and reliability bins on hand-made readings, and
the diagram drawn from them."""
from __future__ import annotations

import pytest

from rosetta.evaluation.calibration import CalibrationBin, expected_calibration_error, reliability_bins
from rosetta.evaluation.plots import reliability_diagram


def test_a_confidence_that_means_what_it_says_has_no_error():
    confidences = [0.95] * 20 + [0.5] * 10
    correct = [True] * 19 + [False] + [True] * 5 + [False] * 5
    bins = reliability_bins(confidences, correct)
    assert [(b.low, b.count) for b in bins] == [(0.5, 10), (0.9, 20)]
    assert bins[1].accuracy == pytest.approx(0.95) and bins[1].confidence == pytest.approx(0.95)
    assert expected_calibration_error(bins) == pytest.approx(0.0)


def test_overconfidence_is_the_gap_weighted_by_each_bins_share():
    # 10 readings at 0.9 of which 5 are right (gap 0.4), 30 at 0.35 of which 12 right (gap 0.05)
    confidences = [0.9] * 10 + [0.35] * 30
    correct = [True] * 5 + [False] * 5 + [True] * 12 + [False] * 18
    assert expected_calibration_error(reliability_bins(confidences, correct)) == pytest.approx(
        10 / 40 * 0.4 + 30 / 40 * 0.05)


def test_bin_edges_and_empty_input():
    bins = reliability_bins([0.0, 0.1, 0.999, 1.0], [False, False, True, True])
    assert [(b.low, b.high, b.count) for b in bins] == [(0.0, 0.1, 1), (0.1, 0.2, 1), (0.9, 1.0, 2)]
    assert reliability_bins([], []) == [] and expected_calibration_error([]) == 0.0
    with pytest.raises(ValueError):
        reliability_bins([0.5], [])


def test_the_reliability_diagram_is_a_png(tmp_path):
    per_rule = {"mean": [CalibrationBin(0.9, 1.0, 10, 0.95, 0.8)],
                "min": [CalibrationBin(0.5, 0.6, 4, 0.55, 0.5), CalibrationBin(0.9, 1.0, 6, 0.93, 0.9)]}
    png = reliability_diagram(per_rule, tmp_path / "reliability.png", "validation")
    assert png.read_bytes().startswith(b"\x89PNG")
