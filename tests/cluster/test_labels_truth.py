"""A labelled table's label column as each task's targets (`cluster.labels`): the readers per
Arrow type, `truth` as the metrics take it, and the refusals, each naming the column. (The
monitor's late labels are tests/monitor/test_labels.py's.)"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from appliance.errors import InvalidInput
from cluster.labels import (
    binary_labels,
    class_index,
    class_values,
    label_column,
    regression_values,
    truth,
)


def _table(values, type_=None) -> pa.Table:
    return pa.table({"x": np.arange(len(values), dtype=np.float64),
                     "target": pa.array(values, type_)})


def _two_chunks(values: list) -> pa.Table:
    half = len(values) // 2
    return pa.concat_tables([_table(values[:half]), _table(values[half:])])


def test_the_label_column_is_returned_whole_across_chunks():
    table = _two_chunks([1, 0, 1, 1])
    assert table.column("target").num_chunks == 2
    assert label_column(table, "target").to_pylist() == [1, 0, 1, 1]
    np.testing.assert_array_equal(binary_labels(table, "target"), [1, 0, 1, 1])


def test_an_absent_label_column_is_refused_listing_the_columns():
    with pytest.raises(InvalidInput, match=r"label column 'y' not found; the table has "
                                           r"\['x', 'target'\]"):
        label_column(_table([0, 1]), "y")


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_a_missing_label_is_refused_for_every_task_with_the_count(task):
    table = _two_chunks([1, None, 0, None])
    with pytest.raises(InvalidInput, match="label column 'target' has 2 missing value"):
        truth(table, "target", task, [0, 1])


@pytest.mark.parametrize(
    ("values", "type_"),
    [([0, 1, 1], pa.int64()), ([0, 1, 1], pa.uint8()), ([0.0, 1.0, 1.0], pa.float32()),
     ([False, True, True], pa.bool_()), (["0", "1", "1"], pa.string())],
)
def test_binary_labels_are_int64_zero_one_from_any_type_that_holds_them(values, type_):
    got = binary_labels(_table(values, type_), "target")
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, [0, 1, 1])


@pytest.mark.parametrize(
    ("values", "type_", "message"),
    [([0, 2, 1], None, r"'target' must hold 0/1 \(binary classifier\), got 2; is the task"),
     ([0.0, 0.5], None, "got 0.5;"),
     ([0.0, float("nan")], None, "got nan;"),
     (["no", "yes"], None, "'target' must hold 0/1, got type string"),
     ([[0], [1]], None, "'target' must hold 0/1, got type list<item: int64>")],
)
def test_binary_labels_refuse_anything_but_zero_and_one(values, type_, message):
    with pytest.raises(InvalidInput, match=message):
        binary_labels(_table(values, type_), "target")


@pytest.mark.parametrize(
    ("values", "type_", "expected"),
    [([2, 0, 7], pa.int8(), [2, 0, 7]),
     ([True, False], pa.bool_(), [1, 0]),
     (["b", "a"], pa.string(), ["b", "a"]),
     (["b", "a"], pa.large_string(), ["b", "a"]),
     # Parquet written from a categorical column reads back dictionary-encoded.
     (pa.array(["b", "a", "b"]).dictionary_encode(), None, ["b", "a", "b"]),
     (pa.array([3, 1]).dictionary_encode(), None, [3, 1]),
     # Chunks read from several files carry dictionaries of their own.
     (pa.chunked_array([pa.array(["b", "a"]).dictionary_encode(),
                        pa.array(["c", "b"]).dictionary_encode()]), None, ["b", "a", "c", "b"])],
)
def test_class_values_are_python_ints_or_strings(values, type_, expected):
    got = class_values(_table(values, type_), "target")
    assert got == expected
    assert {type(v) for v in got} == {type(expected[0])}


@pytest.mark.parametrize(
    ("values", "type_"),
    [([0.0, 1.0], pa.float64()), ([1.5], pa.float32()), ([b"a"], pa.binary())],
)
def test_class_values_refuse_other_types_naming_the_column_and_type(values, type_):
    with pytest.raises(InvalidInput, match=f"label column 'target' must hold integer or string "
                                           f"classes for a multiclass task, got type {type_}"):
        class_values(_table(values, type_), "target")


def test_class_index_is_the_position_in_classes_or_minus_one():
    got = class_index(["b", "z", "a", "b"], ["a", "b", "c"])
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, [1, -1, 0, 1])
    assert class_index([], ["a"]).shape == (0,)


@pytest.mark.parametrize(
    ("values", "type_"),
    [([1, -2, 30], pa.int32()), ([1.0, -2.0, 30.0], pa.float32()),
     (pa.array([1, -2, 30]).dictionary_encode(), None)],
)
def test_regression_values_are_float64(values, type_):
    got = regression_values(_table(values, type_), "target")
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, [1.0, -2.0, 30.0])


@pytest.mark.parametrize(
    ("values", "message"),
    [([1.0, float("nan")], "label column 'target' holds a non-finite value"),
     ([1.0, float("-inf")], "label column 'target' holds a non-finite value"),
     (["cheap", "dear"], "label column 'target' must hold numbers for a regression task, got "
                         "type string")],
)
def test_regression_values_refuse_non_numbers(values, message):
    with pytest.raises(InvalidInput, match=message):
        regression_values(_table(values), "target")


def test_truth_for_each_task():
    np.testing.assert_array_equal(truth(_table([1, 0, 1]), "target", "binary"), [1, 0, 1])
    reg = truth(_table([1, 0, 1]), "target", "regression")
    assert reg.dtype == np.float64 and reg.tolist() == [1.0, 0.0, 1.0]
    # Multiclass: each class's index in the model's classes; a class it never saw is -1.
    multi = truth(_table(["cat", "dog", "eel"]), "target", "multiclass", ["cat", "dog"])
    np.testing.assert_array_equal(multi, [0, 1, -1])
    # The same column reads as classes 0/1 in the order the model lists them.
    np.testing.assert_array_equal(truth(_table([1, 0, 1]), "target", "multiclass", [1, 0]),
                                  [0, 1, 0])
    # A model without classes has seen none of them.
    np.testing.assert_array_equal(truth(_table([1, 0]), "target", "multiclass"), [-1, -1])


def test_truth_refuses_what_the_task_cannot_have():
    with pytest.raises(InvalidInput, match="must hold 0/1"):
        truth(_table([0, 1, 2]), "target", "binary")
    with pytest.raises(InvalidInput, match="integer or string classes"):
        truth(_table([0.5, 1.5]), "target", "multiclass", [0.5, 1.5])
    with pytest.raises(InvalidInput, match="must hold numbers"):
        truth(_table(["a", "b"]), "target", "regression")
