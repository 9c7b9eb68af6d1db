"""Scoring a bundle on labelled rows (`cluster.evaluate`): each task's metrics, worked out by
hand on networks whose outputs are known (one linear layer with set weights), and the tables
it refuses. The metrics' own definitions are tested in tests/monitor/test_metrics.py; the
label readers in test_labels_truth.py."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
import torch

from appliance.errors import InvalidInput
from cluster.bundle import ModelBundle, Preprocessor
from cluster.evaluate import evaluate


def _linear(weight: list[list[float]], bias: list[float] | None = None) -> torch.nn.Linear:
    layer = torch.nn.Linear(len(weight[0]), len(weight))
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight))
        layer.bias.copy_(torch.tensor(bias or [0.0] * len(weight)))
    return layer


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


@pytest.fixture
def binary() -> ModelBundle:
    # The logit is x itself (x is not rescaled): the score is sigmoid(x).
    pre = Preprocessor(numerical={"x": (0.0, 1.0)}, categorical={})
    return ModelBundle(pre, _linear([[1.0]]), 0, 0, "y")


def test_binary_accuracy_auc_and_log_loss(binary):
    x = np.array([-2.0, -1.0, 1.0, 2.0, -1.5])
    y = [0, 0, 1, 1, 1]
    got = evaluate(binary, pa.table({"x": x, "y": y}), "y")
    assert set(got) == {"accuracy", "auc", "log_loss", "rows"}
    assert got["rows"] == 5
    assert got["accuracy"] == pytest.approx(0.8)  # the positive at -1.5 scores under 0.5
    # -1.5 scores below the negative at -1: 5 of the 6 (positive, negative) pairs are in order.
    assert got["auc"] == pytest.approx(5 / 6)
    p_true = np.where(np.array(y) == 1, _sigmoid(x), 1 - _sigmoid(x))
    assert got["log_loss"] == pytest.approx(float(-np.mean(np.log(p_true))), rel=1e-5)


def test_binary_accuracy_is_at_the_bundles_threshold(binary):
    table = pa.table({"x": [-2.0, -1.0, 1.0, 2.0], "y": [0, 0, 1, 1]})
    assert evaluate(binary, table, "y")["accuracy"] == 1.0
    binary.threshold = 0.8  # sigmoid(1) = 0.73 is class 0 now
    at_08 = evaluate(binary, table, "y")
    assert at_08["accuracy"] == 0.75
    assert at_08["auc"] == 1.0  # the ranking does not depend on the threshold


def test_binary_with_one_class_only_has_no_auc(binary):
    got = evaluate(binary, pa.table({"x": [1.0, 2.0, -1.0], "y": [1, 1, 1]}), "y")
    assert got["auc"] is None
    assert got["accuracy"] == pytest.approx(2 / 3)
    assert got["rows"] == 3


def test_extra_columns_and_column_order_do_not_matter(binary):
    plain = pa.table({"x": [-1.0, 1.0, 2.0], "y": [0, 1, 0]})
    busy = pa.table({"note": ["a", "b", "c"], "y": [0, 1, 0], "x": [-1.0, 1.0, 2.0],
                     "other": [9, 9, 9]})
    assert evaluate(binary, busy, "y") == evaluate(binary, plain, "y")


def _multiclass(classes: list) -> ModelBundle:
    # One-hot of category c, times 5: the class the row's category names wins with
    # softmax(5, 0, 0) = e^5 / (e^5 + 2).
    pre = Preprocessor(numerical={}, categorical={"c": ["a", "b", "c"]})
    return ModelBundle(pre, _linear((5 * np.eye(3)).tolist()), 0, 0, "y", task="multiclass",
                       classes=classes)


def test_multiclass_counts_a_class_the_model_never_saw_as_wrong():
    bundle = _multiclass(["a", "b", "c"])
    table = pa.table({"c": ["a", "b", "c", "a"], "y": ["a", "b", "c", "d"]})
    got = evaluate(bundle, table, "y")
    assert set(got) == {"accuracy", "macro_f1", "log_loss", "rows"}
    assert got["rows"] == 4
    assert got["accuracy"] == 0.75
    # Class "a" is predicted twice and right once (F1 2/3); "b" and "c" are perfect.
    assert got["macro_f1"] == pytest.approx((2 / 3 + 1 + 1) / 3)
    right = math.exp(5) / (math.exp(5) + 2)
    # The unseen class has no probability: the clip floor, 1e-7.
    expected = -(3 * math.log(right) + math.log(1e-7)) / 4
    assert got["log_loss"] == pytest.approx(expected, rel=1e-5)


def test_multiclass_with_integer_classes():
    bundle = _multiclass([0, 1, 2])
    table = pa.table({"c": ["a", "b", "c", "c"], "y": pa.array([0, 1, 2, 1], pa.int32())})
    got = evaluate(bundle, table, "y")
    assert got["accuracy"] == 0.75
    # "b" predicted once and right (F1 2/3: it is the label twice); "c" right once of two.
    assert got["macro_f1"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)


def _regression() -> ModelBundle:
    # The network answers x standardised; the bundle turns it into 10 + 2x in label units.
    pre = Preprocessor(numerical={"x": (0.0, 1.0)}, categorical={})
    return ModelBundle(pre, _linear([[1.0]]), 0, 0, "y", task="regression", target=(10.0, 2.0))


def test_regression_rmse_mae_and_r2():
    table = pa.table({"x": [0.0, 1.0, -1.0, 0.5], "y": [10, 12, 8, 12]})  # int labels too
    got = evaluate(_regression(), table, "y")
    assert set(got) == {"rmse", "mae", "r2", "rows"}
    # Predictions 10, 12, 8, 11: one error of 1.
    assert got["rows"] == 4
    assert got["rmse"] == pytest.approx(0.5)
    assert got["mae"] == pytest.approx(0.25)
    # Squared deviations from the mean 10.5: 0.25 + 2.25 + 6.25 + 2.25 = 11.
    assert got["r2"] == pytest.approx(1 - 1 / 11)


def test_regression_on_constant_labels_has_no_r2():
    got = evaluate(_regression(), pa.table({"x": [0.0, 0.5], "y": [10.0, 10.0]}), "y")
    assert got["r2"] is None
    assert got["mae"] == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("bundle", "table", "message"),
    [
        ("binary", pa.table({"x": pa.array([], pa.float64()), "y": pa.array([], pa.int64())}),
         r"empty table \(0 rows\)"),
        ("binary", pa.table({"z": [1.0], "y": [1]}), "missing feature 'x'"),
        ("binary", pa.table({"x": ["a"], "y": [1]}), "feature 'x' has type string"),
        ("binary", pa.table({"x": [1.0]}), "label column 'y' not found"),
        ("binary", pa.table({"x": [1.0, 2.0], "y": [1, None]}), "'y' has 1 missing value"),
        ("binary", pa.table({"x": [1.0, 2.0], "y": [1, 2]}), "must hold 0/1"),
        ("regression", pa.table({"x": [1.0], "y": ["high"]}), "must hold numbers"),
        ("multiclass", pa.table({"c": ["a"], "y": [0.5]}), "integer or string classes"),
    ],
)
def test_bad_tables_are_refused_naming_what_is_wrong(bundle, table, message):
    model = {"binary": ModelBundle(Preprocessor({"x": (0.0, 1.0)}, {}), _linear([[1.0]]), 0, 0,
                                   "y"),
             "regression": _regression(), "multiclass": _multiclass(["a", "b", "c"])}[bundle]
    with pytest.raises(InvalidInput, match=message):
        evaluate(model, table, "y")
