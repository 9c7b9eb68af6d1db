"""Categorical statistics against scipy: chi-square contingency, Jensen-Shannon, and friends."""

from __future__ import annotations

import numpy as np
import pytest
from drift_helpers import one_feature
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import jensenshannon
from scipy.stats import chi2_contingency

CAT = ["chi2", "psi", "jensen_shannon", "hellinger", "tvd", "unseen_share"]


def _tables(ref: list, cur: list) -> tuple[np.ndarray, np.ndarray, list]:
    keys = sorted({str(v) for v in ref if v is not None} | {str(v) for v in cur if v is not None})
    p = np.array([sum(1 for v in ref if v is not None and str(v) == k) for k in keys])
    q = np.array([sum(1 for v in cur if v is not None and str(v) == k) for k in keys])
    return p, q, keys


_cats = st.sampled_from(["a", "b", "c", "d", "e", None])


@settings(max_examples=150, deadline=None)
@given(ref=st.lists(_cats, min_size=1, max_size=80), cur=st.lists(_cats, min_size=1, max_size=80))
def test_categorical_stats_match_scipy(ref, cur):
    if all(v is None for v in ref) or all(v is None for v in cur):
        return  # all-missing is an input error
    feat = one_feature(
        np.array(ref, dtype=object), np.array(cur, dtype=object), stats=CAT, categorical=True
    )
    p, q, keys = _tables(ref, cur)
    expected = chi2_contingency(np.stack((p, q)))
    assert feat["chi2"]["statistic"] == pytest.approx(expected.statistic, rel=1e-9, abs=1e-12)
    assert feat["chi2"]["pvalue"] == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)
    assert feat["chi2"]["dof"] == expected.dof
    js = jensenshannon(p, q, base=2)
    assert feat["jensen_shannon"]["value"] == pytest.approx(0.0 if np.isnan(js) else js, abs=1e-12)
    pp, qq = p / p.sum(), q / q.sum()
    assert feat["tvd"]["value"] == pytest.approx(0.5 * np.abs(pp - qq).sum(), abs=1e-15)
    hell = np.linalg.norm(np.sqrt(pp) - np.sqrt(qq)) / np.sqrt(2)
    assert feat["hellinger"]["value"] == pytest.approx(hell, abs=1e-15)
    seen = {str(v) for v in ref if v is not None}
    unseen = sum(1 for v in cur if v is not None and str(v) not in seen)
    assert feat["unseen_share"]["value"] == unseen / sum(1 for v in cur if v is not None)
    assert feat.missing_share["current"] == cur.count(None) / len(cur)


def test_yates_correction_on_two_categories():
    ref = np.array(["a"] * 30 + ["b"] * 10, dtype=object)
    cur = np.array(["a"] * 12 + ["b"] * 14, dtype=object)
    feat = one_feature(ref, cur, stats=["chi2"], categorical=True)
    expected = chi2_contingency([[30, 10], [12, 14]])
    assert expected.dof == 1
    assert feat["chi2"]["statistic"] == pytest.approx(expected.statistic, rel=1e-12)
    assert feat["chi2"]["pvalue"] == pytest.approx(expected.pvalue, rel=1e-12)


def test_single_category_has_no_degrees_of_freedom():
    feat = one_feature(np.array(["a"] * 5), np.array(["a"] * 3), stats=CAT, categorical=True)
    assert feat["chi2"] == {"statistic": 0.0, "pvalue": 1.0, "dof": 0, "drifted": False}
    assert feat["jensen_shannon"]["value"] == 0.0  # scipy would give NaN here
    assert not feat.drifted


def test_integer_predictions_named_categorical():
    rng = np.random.default_rng(0)
    ref = rng.integers(0, 3, size=2_000)
    cur = np.concatenate([rng.integers(0, 3, size=900), np.full(100, 7)])
    feat = one_feature(ref, cur, stats=CAT, categorical=True)
    assert feat.kind == "categorical"
    assert feat["unseen_share"]["value"] == pytest.approx(0.1)
    assert feat["unseen_share"]["categories"] == ["7"]
    assert feat.drifted
    # 1 and 1.0 are the same class (a CSV column with a gap reads as float)
    same = one_feature(ref, ref.astype(np.float64), stats=CAT, categorical=True)
    assert same["tvd"]["value"] == 0.0 and same["unseen_share"]["value"] == 0.0


def test_pyarrow_columns_are_accepted():
    import pyarrow as pa
    ref = pa.chunked_array([["a", "b", None], ["b", "c"]])
    cur = pa.array(["a", "a", "d", None])
    feat = one_feature(ref, cur, stats=CAT, categorical=True)
    assert feat.missing_share["reference"] == pytest.approx(0.2)
    assert feat["unseen_share"]["value"] == pytest.approx(1 / 3)
