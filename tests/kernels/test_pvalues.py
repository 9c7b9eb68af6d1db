"""p-values (`kernels._pvalues`) against SciPy itself: the two-sample KS p-value on the exact
and the asymptotic path, as `scipy.stats.ks_2samp(method="auto")` gives it, and the chi-square
tail."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from kernels._pvalues import chi2_sf, ks_pvalue


@pytest.mark.parametrize(
    ("n1", "n2", "shift"),
    [
        (7, 5, 0.0),  # tiny: the exact lattice count
        (300, 200, 0.2),  # exact, unequal sizes
        (2_000, 2_000, 0.05),  # exact, equal sizes
        (12_000, 900, 0.1),  # one sample over 10,000: the asymptotic law
        (20_000, 15_000, 0.02),  # asymptotic, through the fast Smirnov sum
    ],
)
def test_ks_pvalue_is_scipys(n1, n2, shift):
    rng = np.random.default_rng(n1 * 7 + n2)
    a, b = rng.normal(size=n1), rng.normal(shift, size=n2)
    expected = stats.ks_2samp(a, b, method="auto")
    d, p = ks_pvalue(float(expected.statistic), n1, n2)
    assert d == pytest.approx(expected.statistic, rel=1e-12)
    assert p == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)


def test_ks_pvalue_on_the_exact_path_rounds_the_statistic_to_its_lattice():
    # With n1 = 4, n2 = 6 every attainable D is a multiple of 1/12: a float a hair off is
    # reported on the lattice, as scipy does.
    d, p = ks_pvalue(0.5 + 1e-12, 4, 6)
    assert d == pytest.approx(6 / 12, abs=1e-15)
    assert 0.0 < p <= 1.0


def test_ks_pvalue_extremes_stay_in_the_unit_interval():
    assert ks_pvalue(0.0, 50, 60)[1] == 1.0
    assert ks_pvalue(1.0, 20_000, 20_000)[1] == pytest.approx(0.0, abs=1e-300)


@pytest.mark.parametrize(("statistic", "dof"), [(0.0, 1), (3.84, 1), (12.5, 4), (250.0, 99)])
def test_chi2_sf_is_the_upper_tail(statistic, dof):
    assert chi2_sf(statistic, dof) == pytest.approx(stats.chi2.sf(statistic, dof), rel=1e-12)
    assert math.isclose(chi2_sf(3.841458820694124, 1), 0.05, rel_tol=1e-9)
