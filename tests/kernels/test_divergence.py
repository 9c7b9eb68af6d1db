"""Histogram distances (`kernels._divergence`) on hand-worked histograms and against SciPy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon

from kernels._divergence import (
    PSI_EPSILON,
    hellinger,
    histogram_stats,
    jensen_shannon,
    proportions,
    psi,
    total_variation,
)

REF = np.array([50, 30, 20])
CUR = np.array([20, 30, 50])


def test_identical_histograms_are_at_distance_zero_whatever_their_totals():
    twice = REF * 2
    assert psi(REF, twice) == pytest.approx(0.0, abs=1e-15)
    # scipy's own jensenshannon may give NaN here; this one is exactly 0.
    assert jensen_shannon(REF, twice) == 0.0
    assert hellinger(REF, twice) == pytest.approx(0.0, abs=1e-15)
    assert total_variation(REF, twice) == pytest.approx(0.0, abs=1e-15)


def test_worked_values():
    p, q = proportions(REF), proportions(CUR)
    assert p.sum() == pytest.approx(1.0) and p.dtype == np.float64
    assert psi(REF, CUR) == pytest.approx(2 * 0.3 * math.log(0.5 / 0.2))
    assert total_variation(REF, CUR) == pytest.approx(0.3)
    expected_h = math.sqrt(np.sum((np.sqrt(p) - np.sqrt(q)) ** 2) / 2)
    assert hellinger(REF, CUR) == pytest.approx(expected_h)
    assert jensen_shannon(REF, CUR) == pytest.approx(jensenshannon(p, q, base=2), rel=1e-12)


def test_an_emptied_bin_stays_finite_in_psi_and_disjoint_histograms_are_at_one():
    emptied = np.array([0, 40, 60])
    expected = (PSI_EPSILON - 0.5) * math.log(PSI_EPSILON / 0.5) + (0.4 - 0.3) * math.log(
        0.4 / 0.3
    ) + (0.6 - 0.2) * math.log(0.6 / 0.2)
    assert psi(REF, emptied) == pytest.approx(expected)
    a, b = np.array([5, 0]), np.array([0, 7])
    assert total_variation(a, b) == pytest.approx(1.0)
    assert hellinger(a, b) == pytest.approx(1.0)
    assert jensen_shannon(a, b) == pytest.approx(1.0)


def test_histogram_stats_computes_only_the_named_distances():
    out = histogram_stats(REF, CUR, frozenset({"tvd", "psi", "ks"}))
    assert out == {"psi": {"value": psi(REF, CUR)}, "tvd": {"value": pytest.approx(0.3)}}
