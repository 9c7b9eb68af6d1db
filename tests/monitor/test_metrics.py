"""Live metrics from labels: hand-computed cases, scipy's Mann-Whitney U, and no NaN anywhere."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.stats import mannwhitneyu

from appliance.errors import InvalidInput
from appliance.monitor.metrics import (
    HIGHER_IS_BETTER,
    LOWER_IS_BETTER,
    MAIN_METRIC,
    better,
    binary_metrics,
    evaluation_metrics,
    live_metrics,
    multiclass_metrics,
    regression_metrics,
    roc_auc,
)


def _assert_plain(result: dict) -> None:
    """Every value a Python int, float or None: JSON-able without NaN, no NumPy scalars."""
    for key, value in result.items():
        assert type(value) in (int, float, type(None)), (key, type(value))
        assert not (isinstance(value, float) and math.isnan(value)), key
    json.dumps(result, allow_nan=False)


# --- binary -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("y_true", "y_pred", "expected"),
    [
        # tp=2 (rows 0, 3), fp=1 (row 1), fn=1 (row 2), tn=1 (row 4)
        (
            [1, 0, 1, 1, 0],
            [1, 1, 0, 1, 0],
            {"rows": 5, "correct": 3, "accuracy": 0.6, "precision": 2 / 3, "recall": 2 / 3},
        ),
        # nothing predicted positive: precision has no denominator
        (
            [1, 0, 0, 1],
            [0, 0, 0, 0],
            {"rows": 4, "correct": 2, "accuracy": 0.5, "precision": None, "recall": 0.0},
        ),
        # no actual positives: recall has no denominator
        (
            [0, 0, 0],
            [1, 0, 0],
            {"rows": 3, "correct": 2, "accuracy": 2 / 3, "precision": 0.0, "recall": None},
        ),
        # booleans and 0.0/1.0 floats are labels too
        (
            np.array([True, False]),
            np.array([1.0, 1.0]),
            {"rows": 2, "correct": 1, "accuracy": 0.5, "precision": 0.5, "recall": 1.0},
        ),
    ],
)
def test_binary_counts_by_hand(y_true, y_pred, expected):
    result = binary_metrics(y_true, y_pred)
    assert result == {**expected, "auc": None, "log_loss": None}
    _assert_plain(result)


@pytest.mark.parametrize(
    ("y", "scores", "expected"),
    [
        ([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9], 1.0),
        ([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1], 0.0),
        # positives 0.35 and 0.8 against negatives 0.1 and 0.4: 3 of 4 pairs in order
        ([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], 0.75),
        # one tied pair counts half
        ([0, 1], [0.5, 0.5], 0.5),
        # positive 0.5 ties negative 0.5 (half) and beats 0.2: (1 + 0.5) / 2
        ([0, 0, 1], [0.2, 0.5, 0.5], 0.75),
        # only the order matters, not the scale
        ([0, 0, 1, 1], [-3.0, 10.0, 2.0, 50.0], 0.75),
        ([1, 1], [0.1, 0.2], None),
        ([0, 0], [0.1, 0.2], None),
        ([], [], None),
    ],
)
def test_auc_by_hand(y, scores, expected):
    assert roc_auc(y, scores) == expected


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_equals_mann_whitney_u_with_ties(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 500)
    scores = np.round(rng.random(500) * 0.6 + 0.3 * y, 1)  # one decimal: many ties
    pos, neg = scores[y == 1], scores[y == 0]
    u = mannwhitneyu(pos, neg).statistic  # U of the first sample; ties count half
    auc = roc_auc(y, scores)
    assert type(auc) is float
    assert auc == pytest.approx(u / (len(pos) * len(neg)), rel=1e-12)


def test_log_loss_against_the_formula():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 300)
    scores = rng.random(300)
    scores[:4] = [0.0, 1.0, 0.0, 1.0]  # exercise the clip at both ends
    y[:4] = [1, 0, 0, 1]

    def clipped(s):
        return min(max(s, 1e-7), 1 - 1e-7)

    expected = -sum(
        math.log(clipped(s)) if t == 1 else math.log(1 - clipped(s))
        for t, s in zip(y, scores, strict=True)
    ) / len(y)
    result = binary_metrics(y, (scores >= 0.5).astype(int), scores)
    assert result["log_loss"] == pytest.approx(expected, rel=1e-12)
    assert result["auc"] == roc_auc(y, scores)
    _assert_plain(result)


def test_one_class_gives_none_not_nan():
    result = binary_metrics([1, 1, 1], [1, 0, 1], [0.9, 0.4, 0.7])
    assert result["auc"] is None
    assert result["precision"] == 1.0 and result["recall"] == 2 / 3
    _assert_plain(result)
    for task in ("binary", "multiclass", "regression"):
        _assert_plain(live_metrics(task, [0, 0], [0, 0], [0.1, 0.2]))


# --- multiclass and regression ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("y_true", "y_pred", "expected"),
    [
        # class 0: P 1/1, R 1/1; class 1: never right, P 0/1, R 0/1; class 2: P 1/2, R 1/2
        ([0, 1, 2, 2], [0, 2, 2, 1], {"correct": 2, "precision": 1.5 / 3, "recall": 1.5 / 3}),
        # class "c" is never predicted (P 0 by convention, R 0/1); class "b" never true
        # (P 0/1, R 0 by convention); class "a": P 2/2, R 2/2
        (
            ["a", "a", "c"],
            ["a", "a", "b"],
            {"correct": 2, "precision": (1 + 0 + 0) / 3, "recall": (1 + 0 + 0) / 3},
        ),
        # class 3 never predicted: P 0 although it has no false positives; P = (3/4 + 0) / 2
        ([1, 1, 1, 3], [1, 1, 1, 1], {"correct": 3, "precision": 0.75 / 2, "recall": 1 / 2}),
    ],
)
def test_multiclass_macro_averages_by_hand(y_true, y_pred, expected):
    result = multiclass_metrics(y_true, y_pred)
    n = len(y_true)
    assert result["rows"] == n
    assert result["correct"] == expected["correct"]
    assert result["accuracy"] == pytest.approx(expected["correct"] / n)
    assert result["precision"] == pytest.approx(expected["precision"])
    assert result["recall"] == pytest.approx(expected["recall"])
    _assert_plain(result)


def test_regression_by_hand():
    result = regression_metrics([1.0, 2.0, 3.0], [2.0, 2.0, 5.0])  # errors 1, 0, 2
    assert result == {"rows": 3, "mae": 1.0, "rmse": pytest.approx(math.sqrt(5 / 3))}
    _assert_plain(result)


# --- dispatch and errors ----------------------------------------------------------------------


def test_live_metrics_dispatches_on_task():
    y, pred, scores = [1, 0, 1, 0], [1, 0, 0, 0], [0.8, 0.3, 0.4, 0.1]
    assert live_metrics("binary", y, pred, scores) == binary_metrics(y, pred, scores)
    assert live_metrics("multiclass", y, pred, scores) == multiclass_metrics(y, pred)
    assert live_metrics("regression", y, pred) == regression_metrics(y, pred)


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_live_metrics_on_no_rows_is_rows_only(task):
    assert live_metrics(task, [], [], None) == {"rows": 0}


@pytest.mark.parametrize("task", ["ranking", "Binary", "", None])
def test_unknown_task_is_named(task):
    with pytest.raises(InvalidInput, match=f"unknown task {task!r}"):
        live_metrics(task, [1], [1])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: binary_metrics([0, 2], [0, 1]), "y_true must hold 0/1.*got 2 at row 1"),
        (lambda: binary_metrics([0, 1], [0, 1, 1]), "y_true has 2 rows but y_pred has 3"),
        (lambda: binary_metrics([0, 1], [0, 1], [0.3]), "y_true has 2 rows but scores has 1"),
        (lambda: binary_metrics([0, 1], [0, 1], [0.3, np.nan]), "scores must be finite.*row 1"),
        (lambda: roc_auc([[0, 1]], [[0.1, 0.2]]), "1-D"),
        (lambda: multiclass_metrics([1, 2], ["1", "2"]), "both must be numbers or both strings"),
        (lambda: regression_metrics([1.0, np.inf], [1.0, 2.0]), "y_true must be finite"),
        (lambda: regression_metrics(["a"], ["b"]), "y_true must be numbers"),
    ],
)
def test_bad_input_says_what_and_where(call, message):
    with pytest.raises(InvalidInput, match=message):
        call()


# --- ordering ---------------------------------------------------------------------------------


def test_every_metric_has_one_direction():
    assert not HIGHER_IS_BETTER & LOWER_IS_BETTER
    quality = set(binary_metrics([0, 1], [0, 1], [0.2, 0.8])) - {"rows", "correct"}
    quality |= set(regression_metrics([1.0], [1.0])) - {"rows"}
    # ... and what training records on a holdout, for every task.
    quality |= set(evaluation_metrics("multiclass", [0, 1], [[0.9, 0.1], [0.2, 0.8]])) - {"rows"}
    quality |= set(evaluation_metrics("regression", [1.0, 2.0], [1.0, 2.5])) - {"rows"}
    assert quality == HIGHER_IS_BETTER | LOWER_IS_BETTER


@pytest.mark.parametrize(
    ("metric", "a", "b", "expected"),
    [
        ("accuracy", 0.9, 0.8, True),
        ("accuracy", 0.8, 0.9, False),
        ("auc", 0.7, 0.7, True),  # at least as good: ties count
        ("log_loss", 0.2, 0.3, True),
        ("log_loss", 0.3, 0.2, False),
        ("rmse", 1.0, 1.0, True),
        ("precision", None, 0.5, False),  # an undefined value never wins
        ("recall", 0.0, None, True),
        ("auc", None, None, True),
        ("auc", float("nan"), 0.5, False),
    ],
)
def test_better(metric, a, b, expected):
    assert better(metric, a, b) is expected


def test_better_rejects_a_count():
    with pytest.raises(InvalidInput, match="'rows'"):
        better("rows", 10, 5)


# --- evaluation metrics per task ---------------------------------------------------------------


def test_evaluation_metrics_multiclass_by_hand():
    # Rows: true 0,1,2,2; predicted (argmax) 0,2,2,2; a class-3 row the model never saw (-1).
    proba = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.2, 0.6], [0.1, 0.1, 0.8],
                      [0.5, 0.3, 0.2]])
    m = evaluation_metrics("multiclass", [0, 1, 2, 2, -1], proba)
    assert m["rows"] == 5 and m["accuracy"] == pytest.approx(3 / 5)
    # F1 per class seen: 0: tp 1 of (2 predicted + 1 true) -> 2/3; 1: 0; 2: 2*2/(3+2) = 0.8.
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0 + 0.8) / 3)
    expected = -np.mean(np.log([0.7, 0.3, 0.6, 0.8, 1e-7]))
    assert m["log_loss"] == pytest.approx(expected)


def test_evaluation_metrics_regression_by_hand():
    m = evaluation_metrics("regression", [1.0, 2.0, 3.0], [1.0, 2.0, 5.0])
    assert m["mae"] == pytest.approx(2 / 3)
    assert m["rmse"] == pytest.approx(np.sqrt(4 / 3))
    assert m["r2"] == pytest.approx(1 - 4 / 2)
    assert evaluation_metrics("regression", [2.0, 2.0], [2.0, 1.0])["r2"] is None


def test_evaluation_metrics_binary_thresholds_and_every_task_has_a_main_metric():
    m = evaluation_metrics("binary", [0, 1, 1], [0.2, 0.6, 0.9], threshold=0.7)
    assert m == {"accuracy": pytest.approx(2 / 3), "auc": 1.0, "log_loss": pytest.approx(
        -np.mean(np.log([0.8, 0.6, 0.9]))), "rows": 3}
    assert set(MAIN_METRIC) == {"binary", "multiclass", "regression"}
    assert set(MAIN_METRIC.values()) <= HIGHER_IS_BETTER | LOWER_IS_BETTER
    with pytest.raises(InvalidInput, match="unknown task"):
        evaluation_metrics("ranking", [1], [1])
