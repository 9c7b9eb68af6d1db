"""Numerical statistics against scipy: KS (bit-exact statistic), Wasserstein-1, moments, bins."""

from __future__ import annotations

import math

import numpy as np
import pytest
from drift_helpers import finite, nonmissing, one_feature
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import stats as sps

from kernels import _numerical

NUM = ["ks", "wasserstein", "psi", "jensen_shannon", "hellinger", "mean_shift", "std_shift"]


@pytest.fixture(scope="module", params=["native", "numpy"], autouse=True)
def cpu_walk(request):
    """Every test here runs on both host merge walks: the compiled one and the pure-NumPy one."""
    saved = _numerical._sorted_merge
    if request.param == "native" and saved is None:
        pytest.fail("kernels._sorted_merge is not built (pip install -e . compiles it)")
    if request.param == "numpy":
        _numerical._sorted_merge = None
    yield request.param
    _numerical._sorted_merge = saved


def _assert_ks(ref: np.ndarray, cur: np.ndarray, feat) -> None:
    expected = sps.ks_2samp(nonmissing(ref), nonmissing(cur))
    got = feat["ks"]
    # Bit-exact: the same float64 expression at the same points.
    assert got["statistic"] == float(expected.statistic)
    assert got["pvalue"] == pytest.approx(float(expected.pvalue), rel=1e-6, abs=1e-300)


def _assert_w1(ref: np.ndarray, cur: np.ndarray, feat) -> None:
    r, c = finite(ref), finite(cur)
    if r.size == 0 or c.size == 0:
        assert feat["wasserstein"]["value"] is None or math.isnan(feat["wasserstein"]["value"])
        return
    expected = sps.wasserstein_distance(r, c)
    assert feat["wasserstein"]["value"] == pytest.approx(expected, rel=1e-9, abs=1e-12)


# Values: a small pool makes heavy ties likely; NaN and infinities show up too.
_pool = st.sampled_from([-2.5, -1.0, 0.0, 0.5, 1.0, 3.0, 1e6, math.nan, math.inf, -math.inf])
_wide = st.one_of(
    st.floats(width=32, min_value=-1e6, max_value=1e6),
    st.sampled_from([math.nan, math.inf, -math.inf]),
)


def _column(dtype, elements):
    return arrays(dtype, st.integers(1, 60), elements=elements)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    dtype=st.sampled_from([np.float32, np.float64]),
    data=st.data(),
    tied=st.booleans(),
)
def test_ks_and_wasserstein_match_scipy(dtype, data, tied):
    elements = _pool if tied else _wide
    ref = data.draw(_column(dtype, elements), label="ref")
    cur = data.draw(_column(dtype, elements), label="cur")
    if np.isnan(ref).all() or np.isnan(cur).all():
        return  # an all-missing column is an input error, tested elsewhere
    feat = one_feature(ref, cur, stats=NUM)
    _assert_ks(ref, cur, feat)
    _assert_w1(ref, cur, feat)
    for name in ("psi", "jensen_shannon", "hellinger"):
        assert feat[name]["value"] >= 0.0


@pytest.mark.parametrize(
    ("n1", "n2"),
    [(1, 1), (1, 7), (50, 50), (300, 457), (2_000, 3_000), (9_999, 10_000), (10_001, 800),
     (25_000, 20_000), (5, 30_000)],
)
@pytest.mark.parametrize("shift", [0.0, 0.05, 0.3, 3.0])
def test_ks_pvalue_paths_match_scipy(n1, n2, shift):
    rng = np.random.default_rng(n1 * 7 + n2)
    ref = rng.normal(size=n1)
    cur = rng.normal(shift, size=n2)
    _assert_ks(ref, cur, one_feature(ref, cur, stats=["ks"]))


@pytest.mark.parametrize("n", [1_000, 30_000, 200_000])
def test_heavy_ties_discrete_values(n):
    rng = np.random.default_rng(n)
    ref = rng.integers(0, 5, size=n).astype(np.float64)
    cur = rng.integers(0, 6, size=n // 2 + 3).astype(np.float64)
    feat = one_feature(ref, cur, stats=["ks", "wasserstein"])
    _assert_ks(ref, cur, feat)
    _assert_w1(ref, cur, feat)


def test_large_windows_match_scipy_including_the_smirnov_branch():
    rng = np.random.default_rng(3)
    ref = rng.normal(size=200_000)
    # A small shift lands n*d^2 between 2.2 and 370, where scipy sums the Smirnov series.
    cur = rng.normal(0.012, size=150_000)
    feat = one_feature(ref, cur, stats=["ks", "wasserstein"])
    _assert_ks(ref, cur, feat)
    _assert_w1(ref, cur, feat)


def test_identical_samples_are_zero_everywhere():
    x = np.random.default_rng(0).normal(size=5_000)
    feat = one_feature(x, x.copy(), stats=NUM)
    assert feat["ks"]["statistic"] == 0.0 and feat["ks"]["pvalue"] == 1.0
    assert feat["wasserstein"]["value"] == 0.0
    for name in ("psi", "jensen_shannon", "hellinger"):
        assert feat[name]["value"] == 0.0
    assert feat["mean_shift"]["value"] == 0.0 and feat["std_shift"]["value"] == 0.0
    assert not feat.drifted


def test_constant_columns():
    ref = np.full(100, 2.0)
    same = one_feature(ref, np.full(40, 2.0), stats=NUM)
    assert same["ks"]["statistic"] == 0.0 and same["wasserstein"]["normed"] == 0.0
    moved = one_feature(ref, np.full(40, 3.0), stats=NUM)
    assert moved["ks"]["statistic"] == 1.0
    assert moved["wasserstein"]["value"] == pytest.approx(1.0)
    assert moved["wasserstein"]["normed"] == math.inf  # reported as null in JSON
    assert moved.to_dict()["wasserstein"]["normed"] is None
    assert moved.drifted


def test_moments_and_missing_and_infinite_shares():
    ref = np.array([1.0, 2.0, 3.0, np.nan, np.inf, 4.0, np.nan, -np.inf])
    cur = np.array([2.0, 4.0, 6.0, 8.0])
    feat = one_feature(ref, cur, stats=["mean_shift", "std_shift"])
    r = np.array([1.0, 2.0, 3.0, 4.0])
    assert feat["mean_shift"]["reference"] == pytest.approx(r.mean())
    assert feat["mean_shift"]["value"] == pytest.approx((cur.mean() - r.mean()) / r.std())
    assert feat["std_shift"]["value"] == pytest.approx(cur.std() / r.std() - 1)
    assert feat.missing_share == {"reference": 0.25, "current": 0.0, "change": -0.25,
                                  "drifted": True}
    assert feat.infinite_share == {"reference": 0.25, "current": 0.0}


def test_binned_statistics_on_reference_quantile_bins():
    from scipy.spatial.distance import jensenshannon

    rng = np.random.default_rng(1)
    ref = rng.normal(size=10_000)
    cur = rng.normal(0.5, 1.3, size=7_000)
    feat = one_feature(ref, cur, stats=["psi", "jensen_shannon", "hellinger"])
    edges = np.unique(np.sort(ref)[(np.arange(1, 10) * ref.size) // 10])
    p = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=10)
    q = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=10)
    assert p.tolist() == [1_000] * 10
    pp, qq = p / p.sum(), q / q.sum()
    assert feat["psi"]["value"] == pytest.approx(np.sum((qq - pp) * np.log(qq / pp)), rel=1e-12)
    assert feat["jensen_shannon"]["value"] == pytest.approx(jensenshannon(p, q, base=2), rel=1e-12)
    hell = np.linalg.norm(np.sqrt(pp) - np.sqrt(qq)) / np.sqrt(2)
    assert feat["hellinger"]["value"] == pytest.approx(hell, rel=1e-12)


def test_float32_equals_float64_of_the_same_values():
    rng = np.random.default_rng(2)
    ref32 = rng.normal(size=3_000).astype(np.float32)
    cur32 = rng.normal(0.1, size=2_000).astype(np.float32)
    a = one_feature(ref32, cur32, stats=NUM).to_dict()
    b = one_feature(ref32.astype(np.float64), cur32.astype(np.float64), stats=NUM).to_dict()
    assert a == b


def test_integer_columns_are_numerical():
    ref = np.arange(100)
    feat = one_feature(ref, ref[::-1].copy(), stats=["ks"])
    assert feat["ks"]["statistic"] == 0.0
