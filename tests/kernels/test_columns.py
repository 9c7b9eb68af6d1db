"""`kernels.arrow_numbers`: the one Arrow-to-NumPy converter for numerical columns, and its
one null rule (a null becomes NaN), across types, chunks and slices."""

from __future__ import annotations

import decimal

import numpy as np
import pyarrow as pa
import pytest

from kernels import DriftInputError, arrow_numbers
from kernels._columns import numerical

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
