"""Caller columns into arrays (`kernels._columns`): every container read alike, lengths and
text checked with the column named, categories counted with their missing values whatever
form they come in (NumPy, lists, Arrow, Arrow dictionaries, pandas), and `arrow_numbers`, the
one Arrow-to-NumPy converter for numerical columns with its one null rule (a null becomes NaN)
across types, chunks and slices."""

from __future__ import annotations

import decimal

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from kernels import arrow_numbers
from kernels._columns import (
    as_columns,
    categorical,
    category_key,
    check_lengths,
    column_length,
    numerical,
)
from kernels._errors import DriftInputError

W = "current window"


def test_mappings_arrow_tables_and_dataframes_give_the_same_columns():
    data = {"age": [30, 40], "job": ["a", "b"]}
    from_dict = as_columns(data, what=W)
    from_arrow = as_columns(pa.table(data), what=W)
    from_pandas = as_columns(pd.DataFrame(data), what=W)
    for cols in (from_dict, from_arrow, from_pandas):
        assert list(cols) == ["age", "job"]
        assert numerical("age", cols["age"], what=W).tolist() == [30.0, 40.0]
        assert categorical("job", cols["job"], what=W)[0] == ["a", "b"]


@pytest.mark.parametrize(
    ("columns", "message"),
    [([1, 2], "expected a mapping of column name -> array"), ({}, "no columns given"),
     ({1: [1]}, "column names must be strings, got 1")],
)
def test_bad_containers_are_refused(columns, message):
    with pytest.raises(DriftInputError, match=f"^{W}: .*{message}"):
        as_columns(columns, what=W)


def test_lengths_must_agree_and_a_window_must_have_rows():
    assert column_length(np.zeros((3, 2))) == 3 and column_length([1, 2]) == 2
    assert check_lengths({"a": [1, 2], "b": np.array([3, 4])}, what=W) == 2
    with pytest.raises(DriftInputError, match="column 'b' has 1 rows but 'a' has 2"):
        check_lengths({"a": [1, 2], "b": [3]}, what=W)
    with pytest.raises(DriftInputError, match=r"the window is empty \(0 rows\)"):
        check_lengths({"a": []}, what=W)


def test_numerical_keeps_floats_widens_integers_and_refuses_text():
    f32 = np.array([1.5, np.nan], dtype=np.float32)
    assert numerical("x", f32, what=W) is f32
    assert numerical("x", np.array([1, 2], dtype=np.int8), what=W).dtype == np.float64
    assert numerical("x", np.array([1], dtype=np.float16), what=W).dtype == np.float32
    assert numerical("x", [1, None, 2.5], what=W).tolist()[::2] == [1.0, 2.5]
    assert numerical("x", pa.chunked_array([[1.0, None]]), what=W).tolist()[0] == 1.0
    for text in (["1.5", "2"], [1.0, "2"], pa.array(["a"])):
        with pytest.raises(DriftInputError, match="numerical feature 'x' holds text"):
            numerical("x", text, what=W)
    with pytest.raises(DriftInputError, match="must be 1-D, got shape"):
        numerical("x", np.zeros((2, 2)), what=W)


@pytest.mark.parametrize(
    ("value", "key"),
    [("a", "a"), (b"b", "b"), (True, "True"), (np.int64(3), "3"), (3.0, "3"), (2.5, "2.5"),
     (float("inf"), "inf")],
)
def test_category_keys_agree_across_types(value, key):
    assert category_key(value) == key


def _counts(values):
    cats, counts, missing = categorical("job", values, what=W)
    return dict(zip(cats, counts.tolist(), strict=True)), missing


EXPECTED = ({"a": 2, "b": 1}, 2)


@pytest.mark.parametrize(
    "values",
    [
        ["a", "b", None, "a", float("nan")],
        np.array(["a", "b", None, "a", None], dtype=object),
        pa.array(["a", "b", None, "a", None]),
        pa.chunked_array([["a", "b"], [None, "a", None]]),
        pa.array(["a", "b", None, "a", None]).dictionary_encode(),
        pa.chunked_array([pa.array(["a", "b"]).dictionary_encode(),
                          pa.array([None, "a", None]).dictionary_encode()]),
        pd.Categorical(["a", "b", None, "a", None]),
    ],
    ids=["list", "objects", "arrow", "chunked", "dictionary", "chunked-dictionaries", "pandas"],
)
def test_categories_and_missing_are_counted_alike_in_every_form(values):
    assert _counts(values) == EXPECTED


def test_numeric_categories_merge_ints_and_integral_floats():
    assert _counts(np.array([1, 1, 2])) == ({"1": 2, "2": 1}, 0)
    assert _counts(np.array([1.0, 2.0, np.nan, 1.0])) == ({"1": 2, "2": 1}, 1)
    assert _counts(np.array([1, 1.0, "1"], dtype=object)) == ({"1": 3}, 0)


NAN = float("nan")


@pytest.mark.parametrize(
    ("array", "dtype"),
    [
        (pa.array([1, None, 3, 4], pa.int64()), np.float64),
        (pa.array([1, None, 3, 4], pa.uint8()), np.float64),
        (pa.array([1.0, None, 3.0, 4.0], pa.float64()), np.float64),
        (pa.array([1.0, None, 3.0, 4.0], pa.float32()), np.float32),
        (pa.array([1.0, None, 3.0, 4.0], pa.float16()), np.float32),
        (pa.array([True, None, True, False]), np.float64),
        (pa.array([decimal.Decimal(v) if v else None for v in ("1", None, "3", "4")]),
         np.float64),
    ],
    ids=["int64", "uint8", "double", "float", "halffloat", "bool", "decimal"],
)
def test_nulls_become_nan_whatever_the_number_type(array, dtype):
    got = arrow_numbers(array)
    assert got.dtype == dtype
    want = np.array([1.0, NAN, 3.0, 4.0]) if str(array.type) != "bool" else [1, NAN, 1, 0]
    np.testing.assert_array_equal(got, np.asarray(want, dtype))
    # A chunked column, split across a null and sliced off its first row, reads the same.
    chunked = pa.chunked_array([array.slice(0, 2), array.slice(2)]).slice(1)
    np.testing.assert_array_equal(arrow_numbers(chunked), got[1:])


def test_all_null_and_empty_columns():
    np.testing.assert_array_equal(arrow_numbers(pa.array([None, None])), [NAN, NAN])
    assert arrow_numbers(pa.chunked_array([], pa.int32())).shape == (0,)


def test_a_bitmap_sliced_off_a_byte_boundary():
    values = [True, False, None, True, False, True, True, False, None, True, False]
    want = np.array([NAN if v is None else float(v) for v in values])
    for start in range(4):
        np.testing.assert_array_equal(arrow_numbers(pa.array(values).slice(start)),
                                      want[start:])


def test_a_null_free_double_chunk_is_a_view():
    array = pa.array(np.arange(5.0))
    got = arrow_numbers(array)
    assert not got.flags.owndata  # Arrow's buffer, not a copy
    np.testing.assert_array_equal(got, np.arange(5.0))


@pytest.mark.parametrize("array", [pa.array(["a"]), pa.array([1], pa.timestamp("s")),
                                   pa.array(["a"]).dictionary_encode()])
def test_what_is_not_a_number_is_none_and_the_engine_names_it(array):
    assert arrow_numbers(array) is None
    with pytest.raises(DriftInputError, match="feature 'x'"):
        numerical("x", array, what="w")
