"""Multivariate drift by PCA reconstruction error (`kernels._multivariate`): a window whose
correlation broke reconstructs worse while its marginals do not move, one from the reference's
own law does not, and missing values are imputed, not dropped."""

from __future__ import annotations

import numpy as np
import pytest

from kernels._multivariate import compare_pca, fit_pca

N = 5_000


def _correlated(seed: int, rho: float) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=N)
    y = rho * x + np.sqrt(1 - rho**2) * rng.normal(size=N)
    return [x, y]


@pytest.fixture(scope="module")
def reference():
    cols = _correlated(1, 0.9)
    prof = fit_pca(["x", "y"], cols, [c.mean() for c in cols], [c.std() for c in cols])
    return prof


def test_one_component_is_kept_for_two_strongly_correlated_features(reference):
    assert reference.components.shape == (1, 2)
    # The kept direction is the diagonal; the error left is the minor eigenvalue (1 - rho) / 2.
    assert abs(reference.components[0, 0]) == pytest.approx(abs(reference.components[0, 1]),
                                                             rel=0.01)
    assert reference.error_mean == pytest.approx(0.05, rel=0.1)


def test_a_broken_correlation_reconstructs_worse_and_the_same_law_does_not(reference):
    same = compare_pca(reference, _correlated(2, 0.9), xp=np)
    assert same["ratio"] == pytest.approx(1.0, abs=0.1) and abs(same["zscore"]) < 5
    broken = compare_pca(reference, _correlated(3, 0.0), xp=np)
    assert broken["ratio"] > 5 and broken["zscore"] > 50
    assert broken["components"] == 1 and broken["reference"] == reference.error_mean


def test_missing_values_take_the_reference_mean():
    cols = _correlated(4, 0.9)
    prof = fit_pca(["x", "y"], cols, [c.mean() for c in cols], [c.std() for c in cols])
    window = [c.copy() for c in _correlated(5, 0.9)]
    window[0][:100] = np.nan
    window[1][100:200] = np.inf
    out = compare_pca(prof, window, xp=np)
    assert np.isfinite(out["value"]) and out["ratio"] < 1.5


def test_fewer_than_two_features_have_nothing_joint():
    assert fit_pca(["x"], [np.ones(10)], [1.0], [0.0]) is None
