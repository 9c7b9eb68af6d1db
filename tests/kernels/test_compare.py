"""`compare` and `compute` (`kernels._compare`): one report whatever the thread count, the
shifted feature and only it drifted, missing shares reported, corrections applied across
features, and `compute` the same as fitting then comparing. Bad input: test_errors.py."""

from __future__ import annotations

import numpy as np
import pytest

import kernels

RNG = np.random.default_rng(11)
N = 2_000
REFERENCE = {
    "age": RNG.normal(40, 10, N),
    "income": RNG.lognormal(10, 0.5, N),
    "job": RNG.choice(["a", "b", "c"], N),
}


def _window(shift: float = 0.0, missing: int = 0) -> dict:
    rng = np.random.default_rng(12)
    age = rng.normal(40 + shift, 10, N)
    age[:missing] = np.nan
    return {"age": age, "income": rng.lognormal(10, 0.5, N), "job": rng.choice(["a", "b", "c"], N)}


@pytest.fixture(scope="module")
def profile():
    return kernels.fit_profile(REFERENCE, categorical=["job"])


def test_only_the_shifted_feature_drifts(profile):
    same = kernels.compare(profile, _window(), backend="numpy")
    assert same.drifted_features == [] and not same.dataset_drifted
    shifted = kernels.compare(profile, _window(shift=8), backend="numpy")
    assert shifted.drifted_features == ["age"]
    assert shifted.drifted_share == pytest.approx(1 / 3)
    assert shifted.rows == {"reference": N, "current": N}
    assert shifted.features["age"]["ks"]["pvalue"] < 1e-6


def test_the_thread_count_does_not_change_the_report(profile):
    window = _window(shift=1)
    one = kernels.compare(profile, window, backend="numpy", workers=1)
    many = kernels.compare(profile, window, backend="numpy", workers=4)
    assert one.to_dict() == many.to_dict()


def test_missing_values_are_reported_as_shares(profile):
    report = kernels.compare(profile, _window(missing=1_000), backend="numpy")
    share = report.features["age"].missing_share
    assert (share["reference"], share["current"], share["change"]) == pytest.approx((0, 0.5, 0.5))
    # Half the values gone missing is itself a drift of the feature.
    assert share["drifted"] and "age" in report.drifted_features
    assert report.features["job"].missing_share["current"] == 0.0


def test_a_correction_adjusts_each_test_across_features(profile):
    plain = kernels.compare(profile, _window(shift=0.5), backend="numpy")
    bonf = kernels.compare(profile, _window(shift=0.5), backend="numpy", correction="Bonferroni")
    assert bonf.correction == "bonferroni" and plain.correction is None
    tests = [(f, t) for f in plain.features for t in ("ks", "chi2")
             if t in plain.features[f].stats]
    assert len(tests) == 3  # KS on both numerical features, chi-square on the categorical one
    for name, test in tests:
        p = plain.features[name][test]["pvalue"]
        assert bonf.features[name][test]["pvalue_adjusted"] == pytest.approx(min(1.0, 3 * p))
        assert "pvalue_adjusted" not in plain.features[name][test]
    unset = kernels.compare(profile, _window(), backend="numpy", correction="none")
    assert unset.correction is None


def test_stats_can_be_named_in_one_string(profile):
    report = kernels.compare(profile, _window(), backend="numpy", stats="ks,psi")
    assert report.stats == ("ks", "psi")
    assert set(report.features["age"].stats) == {"ks", "psi"}
    assert set(report.features["job"].stats) == {"psi"}


def test_compute_is_fit_then_compare(profile):
    window = _window(shift=2)
    direct = kernels.compute(REFERENCE, window, categorical=["job"], backend="numpy")
    assert direct.to_dict() == kernels.compare(profile, window, backend="numpy").to_dict()
