"""What every kind's fit starts from (`cluster.fit_data.prepare`), without Ray: the seeded split
into the rows that train and early stopping's validation slice, the preprocessing fitted on the
training rows alone, each task's targets with what the bundle keeps to undo them, and the
refusals that name the bad argument. Fits on a real Ray: tests/cluster/test_train*.py (which
also drive the refusals a fit shares with `prepare`: unknown label or categorical, one class,
too few rows, bad task)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from appliance.errors import InvalidInput
from cluster.fit_data import prepare

OFF = {"early_stopping": 0, "valid_fraction": 0.1}
ON = {"early_stopping": 2, "valid_fraction": 0.25}
LABELS = {"binary": "flag", "multiclass": "kind", "regression": "amount"}


def _table(task: str = "binary", n: int = 40, seed: int = 0) -> pa.Table:
    """x ~ N(0, 1), c in {u, v}, and the task's label, a function of x."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, n)
    labels = {
        "flag": (x > 0).astype(np.int64),
        "kind": np.where(x > 0.5, "high", np.where(x > -0.5, "mid", "low")),
        "amount": 100 + 10 * x,
    }
    return pa.table({"x": x, "c": rng.choice(["u", "v"], n), LABELS[task]: labels[LABELS[task]]})


def _prepare(table: pa.Table, task: str = "binary", resolved=OFF, seed: int = 0, **over):
    args = {"label": LABELS[task], "categorical": ["c"], "resolved": resolved, "seed": seed,
            "num_workers": 1, "task": task, **over}
    return prepare(table, **args)


def _with(table: pa.Table, column: str, row: int, value) -> pa.Table:
    values = table.column(column).to_pylist()
    values[row] = value
    return table.set_column(table.column_names.index(column), column, pa.array(values))


def test_without_early_stopping_every_row_trains():
    table = _table()
    out = _prepare(table)
    np.testing.assert_array_equal(out.train_idx, np.arange(40))
    assert len(out.valid_idx) == 0 and out.x_valid is None and out.y_valid is None
    # x standardised, and c one-hot in two columns.
    assert out.x_train.shape == (40, 3) and out.x_train.dtype == np.float32
    assert out.pre.feature_names == ["x", "c"]
    assert out.y_train.dtype == np.float32
    np.testing.assert_array_equal(out.y_train, table.column("flag").to_numpy())
    assert out.kept == {}


def test_the_validation_slice_is_a_seeded_sample_of_the_given_rows():
    table = _table()
    out = _prepare(table, resolved=ON, seed=7)
    assert len(out.valid_idx) == 10 and len(out.train_idx) == 30
    assert sorted([*out.train_idx, *out.valid_idx]) == list(range(40))
    assert list(out.train_idx) == sorted(out.train_idx)
    assert list(out.valid_idx) == sorted(out.valid_idx)
    assert out.x_valid.shape == (10, 3)
    np.testing.assert_array_equal(out.y_valid, table.column("flag").to_numpy()[out.valid_idx])
    np.testing.assert_array_equal(out.y_train, table.column("flag").to_numpy()[out.train_idx])
    # The seed alone decides the slice: a rerun of the same fit holds back the same rows.
    again, other = _prepare(table, resolved=ON, seed=7), _prepare(table, resolved=ON, seed=8)
    np.testing.assert_array_equal(again.valid_idx, out.valid_idx)
    np.testing.assert_array_equal(again.x_train, out.x_train)
    assert set(other.valid_idx) != set(out.valid_idx)
    # However small the fraction, early stopping has a row to judge by.
    tiny = _prepare(table, resolved={"early_stopping": 1, "valid_fraction": 0.001})
    assert len(tiny.valid_idx) == 1 and len(tiny.train_idx) == 39


def test_the_preprocessing_sees_the_training_rows_only():
    table = _table()
    split = _prepare(table, resolved=ON, seed=3)
    # A category and an outlier that only the validation slice holds (the seed and the row
    # count alone decide the slice, so it is the same one).
    row = int(split.valid_idx[0])
    table = _with(_with(table, "c", row, "w"), "x", row, 1e6)
    out = _prepare(table, resolved=ON, seed=3)
    np.testing.assert_array_equal(out.valid_idx, split.valid_idx)
    x = table.column("x").to_numpy()[out.train_idx]
    assert out.pre.numerical["x"] == pytest.approx((x.mean(), x.std()))
    assert out.pre.categorical == {"c": ["u", "v"]}
    # The unseen category encodes as no category at all.
    np.testing.assert_array_equal(out.x_valid[0, 1:], [0.0, 0.0])
    assert out.x_valid[0, 0] > 1e4


def test_regression_targets_are_standardised_by_the_training_rows():
    table = _table("regression")
    out = _prepare(table, "regression", resolved=ON, seed=1)
    amount = table.column("amount").to_numpy()
    mean, std = amount[out.train_idx].mean(), amount[out.train_idx].std()
    assert out.kept["target"] == pytest.approx((mean, std))
    assert out.y_train.dtype == out.y_valid.dtype == np.float32
    assert float(out.y_train.mean()) == pytest.approx(0.0, abs=1e-5)
    assert float(out.y_train.std()) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(out.y_valid, (amount[out.valid_idx] - mean) / std, rtol=1e-5)


def test_a_constant_regression_label_trains_without_dividing_by_zero():
    table = _table("regression").set_column(2, "amount", pa.array(np.full(40, 7.0)))
    out = _prepare(table, "regression")
    assert out.kept["target"] == (7.0, 1.0)
    np.testing.assert_array_equal(out.y_train, np.zeros(40, dtype=np.float32))


def test_multiclass_targets_index_the_sorted_classes_of_the_training_rows():
    table = _table("multiclass")
    out = _prepare(table, "multiclass")
    assert out.kept == {"classes": ["high", "low", "mid"]}
    assert out.y_train.dtype == np.int64
    names = np.array(out.kept["classes"])[out.y_train]
    np.testing.assert_array_equal(names, table.column("kind").to_numpy(zero_copy_only=False))
    # A class that only the validation slice holds is -1 there, which the loss ignores.
    split = _prepare(table, "multiclass", resolved=ON, seed=2)
    row = int(split.valid_idx[0])
    out = _prepare(_with(table, "kind", row, "rare"), "multiclass", resolved=ON, seed=2)
    assert out.kept == {"classes": ["high", "low", "mid"]}
    assert out.y_valid[0] == -1 and (out.y_valid[1:] >= 0).all()


@pytest.mark.parametrize(
    ("table", "over", "message"),
    [
        (_table(), {"seed": True}, "seed must be a non-negative integer, got True"),
        (_table(), {"seed": 1.5}, "seed must be a non-negative integer, got 1.5"),
        (_table(), {"num_workers": True}, "num_workers must be a positive integer, got True"),
        (_table(), {"num_workers": 2.0}, "num_workers must be a positive integer, got 2.0"),
        (_table().to_pydict(), {}, "table must be a pyarrow.Table, got dict"),
        (_table(), {"categorical": ["c", "flag"]}, "label 'flag' cannot also be a categorical"),
        (_table().select(["flag"]), {"categorical": []},
         "the table has no feature columns besides the label 'flag'"),
        # The validation slice comes out of the rows first: 12 rows leave 9 to train.
        (_table(n=12), {"resolved": ON},
         r"12 rows leave 9 after the validation slice \(need >= 10\)"),
        # Every worker needs a row of its own.
        (_table(n=12), {"num_workers": 13}, r"12 rows leave 12 .* \(need >= 13\)"),
        (_table().set_column(2, "flag", pa.array(np.ones(40, np.int64))), {},
         "label 'flag' has only class 1 in the training rows"),
    ],
)
def test_bad_arguments_are_refused_naming_them(table, over, message):
    with pytest.raises(InvalidInput, match=message):
        _prepare(table, **over)


def test_a_numpy_integer_seed_is_a_seed():
    table = _table()
    a, b = _prepare(table, resolved=ON, seed=np.int64(5)), _prepare(table, resolved=ON, seed=5)
    np.testing.assert_array_equal(a.valid_idx, b.valid_idx)
