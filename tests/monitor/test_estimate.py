"""Label-free estimation (CBPE): PAV, calibration choice, and estimates under covariate shift.

The simulated model is logistic: two Gaussian features x, labels y ~ Bernoulli(sigmoid(w.x)),
and the model's score is sigmoid(w.x) itself, so it is calibrated by construction. Covariate
shift moves the distribution of x and keeps the labelling rule; concept shift changes w.
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from appliance.errors import InvalidInput
from appliance.monitor.estimate import (
    Calibration,
    check_calibration,
    estimate_binary,
    expected_calibration_error,
    isotonic_fit,
)
from appliance.monitor.metrics import binary_metrics

W = np.array([2.0, -1.0])
THRESHOLD = 0.5
WINDOW_ROWS = 5_000


def _simulate(seed: int, rows: int, mean=(0.0, 0.0), scale=1.0, w=W):
    """(true P(y=1|x), labels) for `rows` rows with x ~ N(mean, scale^2 I)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(mean, scale, size=(rows, 2))
    p = 1.0 / (1.0 + np.exp(-(x @ w)))
    return p, (rng.random(rows) < p).astype(np.int64)


def _realised(scores, y):
    return binary_metrics(y, (scores >= THRESHOLD).astype(np.int64), scores)


# --- isotonic fit -----------------------------------------------------------------------------


def _brute_isotonic(x: np.ndarray, y: np.ndarray) -> dict[float, float]:
    """Isotonic fit at each distinct x by the min-max formula, no pooling algorithm involved.

    With ties pooled into weighted points, the least-squares non-decreasing fit at point i is
    max over j <= i of min over k >= i of the weighted mean of points j..k.
    """
    ux = np.unique(x)
    sums = np.array([y[x == v].sum() for v in ux])
    weights = np.array([(x == v).sum() for v in ux], dtype=float)
    m = len(ux)

    def mean(j, k):
        return sums[j : k + 1].sum() / weights[j : k + 1].sum()

    return {
        float(ux[i]): max(min(mean(j, k) for k in range(i, m)) for j in range(i + 1))
        for i in range(m)
    }


@pytest.mark.parametrize("seed", range(6))
def test_pav_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    x = rng.integers(0, 25, n).astype(float)  # integers: many ties
    y = rng.random(n) < 0.3 + 0.02 * x if seed % 2 else rng.normal(x / 10, 1.0)
    xs, ys = isotonic_fit(x, y)
    assert np.all(np.diff(xs) > 0)
    assert np.all(np.diff(ys) >= 0)
    brute = _brute_isotonic(x, np.asarray(y, dtype=float))
    fitted = np.interp(list(brute), xs, ys)
    np.testing.assert_allclose(fitted, list(brute.values()), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    ("x", "y", "xs", "ys"),
    [
        ([3, 1, 2], [3, 1, 2], [1, 2, 3], [1, 2, 3]),  # already monotone once sorted
        ([1, 2, 3], [3, 2, 1], [1, 3], [2, 2]),  # all pooled: one flat block, two knots
        ([1, 1, 2], [1, 0, 0], [1, 2], [1 / 3, 1 / 3]),  # ties pooled first, then merged
        ([1, 2, 3, 4], [0, 1, 0, 1], [1, 2, 3, 4], [0, 0.5, 0.5, 1]),
        ([5], [0.25], [5], [0.25]),
    ],
)
def test_pav_by_hand(x, y, xs, ys):
    got_x, got_y = isotonic_fit(x, y)
    np.testing.assert_allclose(got_x, xs)
    np.testing.assert_allclose(got_y, ys)


# --- calibration ------------------------------------------------------------------------------


def test_ece_by_hand():
    # bins [0, .1): p .05, y 0 -> .05; [.1, .2): p .15, y 1 -> .85; [.9, 1]: p .95 and 1.0,
    # both y 1 -> |1 - .975| on 2 of 4 rows.
    p, y = [0.05, 0.15, 0.95, 1.0], [0, 1, 1, 1]
    assert expected_calibration_error(p, y) == pytest.approx((0.05 + 0.85 + 2 * 0.025) / 4)
    assert expected_calibration_error(p, y, bins=1) == pytest.approx(abs(0.75 - 2.15 / 4))


@pytest.mark.parametrize("seed", range(5))
def test_calibrated_model_keeps_identity(seed):
    p, y = _simulate(seed, WINDOW_ROWS)
    cal = check_calibration(p, y, seed=seed)
    assert cal.method == "identity"
    assert (cal.x, cal.y, cal.rows) == ([], [], WINDOW_ROWS)
    assert cal.ece_raw == pytest.approx(expected_calibration_error(p, y))
    np.testing.assert_array_equal(cal.apply(p), p)


def test_miscalibrated_model_gets_isotonic():
    p, y = _simulate(10, WINDOW_ROWS)
    scores = p**3  # same ranking, far too low
    cal = check_calibration(scores, y, seed=0)
    assert cal.method == "isotonic"
    assert cal.ece_raw > 0.15
    assert cal.ece_calibrated < 0.03
    # The map learned on one sample also calibrates a fresh one.
    fresh_p, fresh_y = _simulate(11, WINDOW_ROWS)
    calibrated = cal.apply(fresh_p**3)
    assert calibrated.min() >= 0.0 and calibrated.max() <= 1.0
    assert expected_calibration_error(calibrated, fresh_y) < 0.03


def test_calibration_round_trips_through_json():
    p, y = _simulate(12, 2_000)
    for cal in (check_calibration(p**2, y), check_calibration(p, y)):
        doc = json.loads(json.dumps(cal.to_dict(), allow_nan=False))
        back = Calibration.from_dict(doc)
        assert back == cal
        np.testing.assert_array_equal(back.apply(p), cal.apply(p))


_GOOD = {
    "method": "isotonic",
    "x": [0.1, 0.5],
    "y": [0.2, 0.6],
    "ece_raw": 0.1,
    "ece_calibrated": 0.05,
    "rows": 100,
}


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([1, 2], "must be a mapping"),
        ({k: v for k, v in _GOOD.items() if k != "rows"}, r"missing field\(s\) \['rows'\]"),
        ({**_GOOD, "bins": 10}, r"unknown field\(s\) \['bins'\]"),
        ({**_GOOD, "method": "platt"}, "method must be one of"),
        ({**_GOOD, "x": "0.1,0.5"}, "x must be a list"),
        ({**_GOOD, "y": [0.2, "high"]}, "y knot must be a finite number"),
        ({**_GOOD, "y": [0.2]}, "2 x knots but 1 y knots"),
        ({**_GOOD, "x": [0.5, 0.1]}, "strictly increasing"),
        ({**_GOOD, "y": [0.6, 0.2]}, "non-decreasing"),
        ({**_GOOD, "y": [0.2, 1.5]}, "within"),
        ({**_GOOD, "x": [], "y": []}, "at least one knot"),
        ({**_GOOD, "method": "identity"}, "identity calibration has no knots"),
        ({**_GOOD, "ece_raw": None}, "ece_raw must be a finite number"),
        ({**_GOOD, "ece_calibrated": float("nan")}, "ece_calibrated must be a finite number"),
        ({**_GOOD, "rows": -1}, "rows must be a non-negative integer"),
        ({**_GOOD, "rows": True}, "rows must be a non-negative integer"),
    ],
)
def test_malformed_calibration_doc(doc, message):
    with pytest.raises(InvalidInput, match=message):
        Calibration.from_dict(doc)


@pytest.mark.parametrize(
    ("scores", "y", "kwargs", "message"),
    [
        ([], [], {}, "no rows"),
        ([0.1, 0.2], [0], {}, "scores has 2 rows but y has 1"),
        ([0.1, 0.2], [0, 2], {}, "y must hold 0/1.*got 2 at row 1"),
        ([0.1, np.nan], [0, 1], {}, "scores must be finite.*row 1"),
        ([0.1, np.inf], [0, 1], {}, "scores must be finite"),
        ([0.1, 1.7], [0, 1], {}, r"in \[0, 1\].*logits"),
        ([0.1, 0.2], [0, 1], {"bins": 0}, "bins must be a positive integer"),
    ],
)
def test_check_calibration_rejects_bad_input(scores, y, kwargs, message):
    with pytest.raises(InvalidInput, match=message):
        check_calibration(scores, y, **kwargs)


# --- estimates --------------------------------------------------------------------------------

_IDENTITY = Calibration("identity", [], [], 0.0, 0.0, 0)


def test_estimate_by_hand():
    scores = np.array([0.9, 0.2, 0.6])  # predicted 1, 0, 1; p = scores (identity)
    got = estimate_binary(scores, threshold=THRESHOLD, calibration=_IDENTITY)
    expected_tp = 0.9 + 0.6
    entropy = -np.mean(scores * np.log(scores) + (1 - scores) * np.log(1 - scores))
    assert got["rows"] == 3
    assert got["accuracy"] == pytest.approx((0.9 + 0.8 + 0.6) / 3)
    assert got["precision"] == pytest.approx(expected_tp / 2)
    assert got["recall"] == pytest.approx(expected_tp / scores.sum())
    assert got["log_loss"] == pytest.approx(entropy)
    assert all(type(v) in (int, float) for v in got.values())


def _pairwise_expected_auc(scores, p):
    """sum over ordered pairs of P(i positive) P(j negative) [s_i > s_j, ties half] / (P * N).

    The expected ROC curve takes every row as p of a positive and 1 - p of a negative, so a row
    tied with itself counts too.
    """
    num = sum(
        p[i] * (1 - p[j]) * ((scores[i] > scores[j]) + 0.5 * (scores[i] == scores[j]))
        for i, j in itertools.product(range(len(p)), repeat=2)
    )
    return num / (p.sum() * (1 - p).sum())


@pytest.mark.parametrize("seed", range(3))
def test_expected_auc_equals_pairwise_form_with_ties(seed):
    rng = np.random.default_rng(seed)
    scores = np.round(rng.random(80), 1)  # many ties
    cal = Calibration("isotonic", [0.0, 1.0], [0.1, 0.9], 0.0, 0.0, 0)
    got = estimate_binary(scores, threshold=THRESHOLD, calibration=cal)["auc"]
    assert got == pytest.approx(_pairwise_expected_auc(scores, cal.apply(scores)), rel=1e-12)


@pytest.mark.parametrize(
    ("scores", "cal", "undefined"),
    [
        ([], _IDENTITY, {"accuracy", "precision", "recall", "auc", "log_loss"}),
        ([0.2, 0.3], _IDENTITY, {"precision"}),  # nothing predicted positive
        ([0.0, 0.0], _IDENTITY, {"precision", "recall", "auc"}),  # no expected positives
        ([1.0, 1.0], _IDENTITY, {"auc"}),  # no expected negatives
    ],
)
def test_undefined_estimates_are_none(scores, cal, undefined):
    got = estimate_binary(scores, threshold=THRESHOLD, calibration=cal)
    assert {k for k, v in got.items() if v is None} == undefined
    json.dumps(got, allow_nan=False)


@pytest.mark.parametrize("threshold", [None, "0.5", float("nan"), True])
def test_estimate_rejects_a_bad_threshold(threshold):
    with pytest.raises(InvalidInput, match="threshold must be a finite number"):
        estimate_binary([0.5], threshold=threshold, calibration=_IDENTITY)


def test_estimate_tracks_covariate_shift():
    p_ref, y_ref = _simulate(20, WINDOW_ROWS)
    cal = check_calibration(p_ref, y_ref)
    # The inputs crowd towards the decision boundary: the model gets much worse, and its
    # scores say so, because the labelling rule P(y|x) is unchanged.
    p_new, y_new = _simulate(21, WINDOW_ROWS, mean=(0.5, 1.0), scale=0.5)
    before, after = _realised(p_ref, y_ref), _realised(p_new, y_new)
    est = estimate_binary(p_new, threshold=THRESHOLD, calibration=cal)
    assert abs(after["accuracy"] - before["accuracy"]) > 0.05
    assert est["accuracy"] == pytest.approx(after["accuracy"], abs=0.02)
    assert est["auc"] == pytest.approx(after["auc"], abs=0.03)
    for key in ("precision", "recall", "log_loss"):
        assert est[key] == pytest.approx(after[key], abs=0.03), key


def test_estimate_of_a_recalibrated_model_tracks_covariate_shift():
    # A reference four times the window keeps the isotonic map's own error small.
    p_ref, y_ref = _simulate(30, 4 * WINDOW_ROWS)
    cal = check_calibration(p_ref**3, y_ref)
    assert cal.method == "isotonic"
    p_new, y_new = _simulate(31, WINDOW_ROWS, mean=(0.5, 1.0), scale=0.5)
    after = _realised(p_new**3, y_new)
    est = estimate_binary(p_new**3, threshold=THRESHOLD, calibration=cal)
    assert est["accuracy"] == pytest.approx(after["accuracy"], abs=0.02)
    assert est["auc"] == pytest.approx(after["auc"], abs=0.03)
    # Uncalibrated, the same scores would be read as far too pessimistic.
    raw = estimate_binary(p_new**3, threshold=THRESHOLD, calibration=_IDENTITY)
    assert abs(raw["accuracy"] - after["accuracy"]) > 0.1


def test_estimate_is_blind_to_concept_shift():
    # CBPE assumes P(y|x) is unchanged. Here the inputs keep their distribution but the rule
    # that labels them changes (w flips its second weight), so the model's scores, and with
    # them the estimate, stay where they were while the real accuracy collapses. Only labels
    # (the realised metrics) can reveal this kind of drift.
    p_ref, y_ref = _simulate(40, WINDOW_ROWS)
    cal = check_calibration(p_ref, y_ref)
    p_new, _ = _simulate(41, WINDOW_ROWS)
    _, y_new = _simulate(41, WINDOW_ROWS, w=np.array([2.0, 1.0]))  # same x, new labels
    before, after = _realised(p_ref, y_ref), _realised(p_new, y_new)
    est = estimate_binary(p_new, threshold=THRESHOLD, calibration=cal)
    assert est["accuracy"] == pytest.approx(before["accuracy"], abs=0.02)
    assert before["accuracy"] - after["accuracy"] > 0.1
    assert est["accuracy"] - after["accuracy"] > 0.1
