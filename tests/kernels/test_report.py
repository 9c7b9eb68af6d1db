"""The report: JSON shape, decisions, multiple-testing correction, PCA, p-value internals."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import false_discovery_control

import kernels
from kernels import _pvalues, _report


def _data(n: int, seed: int, *, shift: float = 0.0, broken: bool = False) -> dict:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    b = a * 0.9 + rng.normal(size=n) * 0.3
    if broken:  # same marginals, correlation gone
        b = rng.permutation(b)
    return {
        "a": a + shift,
        "b": b,
        "c": rng.normal(size=n),
        "region": rng.choice(np.array(["n", "s", "e"], dtype=object), size=n),
        "prediction": rng.integers(0, 2, size=n),
    }


CAT = ["region", "prediction"]


def test_json_shape_matches_the_issue():
    report = kernels.compute(_data(2_000, 0), _data(1_000, 1, shift=1.0), categorical=CAT)
    doc = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert set(doc) == {"rows", "features", "drifted_share", "dataset_drifted", "multivariate"}
    assert doc["rows"] == {"reference": 2_000, "current": 1_000}
    num, cat = doc["features"]["a"], doc["features"]["region"]
    assert num["kind"] == "numerical" and cat["kind"] == "categorical"
    assert set(num["ks"]) >= {"statistic", "pvalue", "drifted"}
    assert set(num["wasserstein"]) >= {"value", "normed"}
    for key in ("psi", "jensen_shannon", "hellinger"):
        assert "value" in num[key] and "value" in cat[key]
    assert set(cat["chi2"]) >= {"statistic", "pvalue"}
    assert "value" in cat["tvd"] and "value" in cat["unseen_share"]
    assert set(num["missing_share"]) >= {"reference", "current", "change"}
    assert num["drifted"] is True and doc["features"]["c"]["drifted"] is False
    assert doc["drifted_share"] == pytest.approx(1 / 5)
    assert doc["dataset_drifted"] is False
    assert report.drifted_features == ["a"]


def test_no_drift_on_a_fresh_sample_of_the_same_distribution():
    report = kernels.compute(_data(20_000, 0), _data(20_000, 1), categorical=CAT)
    assert report.drifted_share == 0.0 and not report.dataset_drifted
    assert not report.multivariate["pca"]["drifted"]


def test_pca_sees_a_broken_correlation_the_marginals_miss():
    prof = kernels.fit_profile(_data(20_000, 0), categorical=CAT)
    report = kernels.compare(prof, _data(20_000, 1, broken=True))
    assert report.features["b"]["ks"]["pvalue"] > 0.01  # marginal unchanged
    pca = report.multivariate["pca"]
    assert pca["drifted"] and pca["ratio"] > 1.5


def test_significance_alone_does_not_flag_drift():
    # A tiny shift at many rows: KS significant, every effect size negligible.
    rng = np.random.default_rng(0)
    ref, cur = rng.normal(size=400_000), rng.normal(0.02, size=400_000)
    feat = kernels.compute({"x": ref}, {"x": cur}).features["x"]
    assert feat["ks"]["drifted"] and not feat.drifted
    # ...unless the threshold on the effect size says so.
    strict = kernels.compute({"x": ref}, {"x": cur}, thresholds={"mean_shift": 0.01})
    assert strict.features["x"].drifted


def test_stats_subset_and_dataset_threshold():
    report = kernels.compute(
        _data(1_000, 0), _data(1_000, 1, shift=2.0), categorical=CAT, stats="ks,tvd",
        thresholds={"dataset": 0.2},
    )
    assert set(report.features["a"].stats) == {"ks"}
    assert set(report.features["region"].stats) == {"tvd"}
    assert report.multivariate == {}
    assert report.dataset_drifted


@pytest.mark.parametrize("seed", range(5))
def test_benjamini_hochberg_matches_scipy(seed):
    p = np.random.default_rng(seed).uniform(size=17) ** 3
    got = _report.adjust_pvalues(p.tolist(), "bh")
    np.testing.assert_allclose(got, false_discovery_control(p), rtol=1e-12)
    assert _report.adjust_pvalues(p.tolist(), "bonferroni") == [min(1.0, x * 17) for x in p]


def test_correction_is_reported_and_used():
    report = kernels.compute(
        _data(500, 0), _data(500, 1, shift=0.3), categorical=CAT, correction="bh"
    )
    for f in report.features.values():
        test = "ks" if f.kind == "numerical" else "chi2"
        assert f[test]["pvalue_adjusted"] >= f[test]["pvalue"]


def test_exact_ks_recursion_port_matches_scipy_compiled():
    from scipy.stats._stats_pythran import _compute_outer_prob_inside_method as compiled

    for m, n, h in [(10, 7, 20), (30, 45, 300), (200, 150, 2_000), (101, 99, 5_000)]:
        g = np.gcd(m, n)
        assert _pvalues._outer_prob_inside_py(m, n, g, h) == pytest.approx(
            compiled(m, n, g, h), rel=1e-12, abs=1e-300
        )


def test_kstwo_sf_matches_scipy_on_every_branch():
    from scipy.stats import kstwo

    for n in (141.0, 2_500.0, 60_000.0, 400_000.0):
        for nx2 in (0.3, 1.0, 2.2, 5.0, 50.0, 369.0, 400.0):
            d = float(np.sqrt(nx2 / n))
            assert _pvalues.kstwo_sf(d, n) == pytest.approx(kstwo.sf(d, n), rel=1e-8, abs=1e-300)
        assert _pvalues.kstwo_sf(0.6, n) == pytest.approx(kstwo.sf(0.6, n), rel=1e-8, abs=1e-300)
