"""`appliance.tables`: one reader for every accepted file type, one null rule for NumPy."""

from __future__ import annotations

import decimal
import gzip
import math

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest

from appliance.errors import InvalidInput
from appliance.tables import ACCEPTED, read_table, table_columns

TABLE = pa.table({"x": pa.array([1.5, 2.5, 3.5]), "c": pa.array(["a", "b", "a"])})


def _write(path, table: pa.Table) -> None:
    name = path.name.lower()
    if name.endswith((".parquet", ".pq", ".parq")):
        pq.write_table(table, path)
    elif name.endswith((".arrow", ".feather", ".ipc")):
        with ipc.new_file(str(path), table.schema) as writer:
            writer.write_table(table)
    else:
        tsv = ".tsv" in name
        opts = pacsv.WriteOptions(delimiter="\t" if tsv else ",")
        sink = pa.BufferOutputStream()
        pacsv.write_csv(table, sink, write_options=opts)
        data = sink.getvalue().to_pybytes()
        if name.endswith(".gz"):
            data = gzip.compress(data)
        elif name.endswith(".bz2"):
            import bz2

            data = bz2.compress(data)
        path.write_bytes(data)


@pytest.mark.parametrize("suffix", ACCEPTED)
def test_every_accepted_suffix_reads_the_same_rows(tmp_path, suffix):
    path = tmp_path / f"rows{suffix.upper() if suffix == '.csv' else suffix}"
    _write(path, TABLE)
    got = read_table(path)
    assert got.column_names == ["x", "c"]
    assert got.column("x").to_pylist() == [1.5, 2.5, 3.5]
    assert got.column("c").to_pylist() == ["a", "b", "a"]


def test_an_unaccepted_suffix_names_the_accepted_list(tmp_path):
    path = tmp_path / "rows.txt"
    path.write_text("x\n1\n")
    with pytest.raises(InvalidInput, match="unsupported type") as info:
        read_table(path, role="reference")
    message = str(info.value)
    assert message.startswith(f"reference file {str(path)!r}")
    assert all(suffix in message for suffix in ACCEPTED)


def test_missing_and_unparsable_files_are_invalid_input(tmp_path):
    with pytest.raises(InvalidInput, match="current file .* does not exist"):
        read_table(tmp_path / "gone.parquet", role="current")
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 cut short")
    with pytest.raises(InvalidInput, match="cannot read data file .* as parquet"):
        read_table(bad)
    with pytest.raises(InvalidInput, match="NUL"):
        read_table("a\x00.csv")


def test_numerical_nulls_become_nan_and_categorical_nulls_stay_none():
    table = pa.table({
        "i": pa.array([1, None, 3], pa.int64()),
        "f": pa.array([0.5, 1.5, None], pa.float32()),
        "b": pa.array([True, None, False]),
        "n": pa.array([None, None, None], pa.null()),
        "c": pa.array(["u", None, "v"]),
        "k": pa.array([7, None, 7], pa.int32()),
    })
    cols = table_columns(table, ["i", "f", "b", "n", "c", "k"], ["c", "k"])
    for name in ("i", "f", "b", "n"):
        assert cols[name].dtype == np.float64, name
    assert cols["i"][0] == 1.0 and math.isnan(cols["i"][1]) and cols["i"][2] == 3.0
    assert math.isnan(cols["f"][2])
    assert cols["b"][0] == 1.0 and math.isnan(cols["b"][1]) and cols["b"][2] == 0.0
    assert np.isnan(cols["n"]).all()
    assert cols["c"].dtype == object and cols["c"].tolist() == ["u", None, "v"]
    # A numeric column listed as categorical becomes strings, its nulls still None.
    assert cols["k"].tolist() == ["7", None, "7"]


def test_numerical_columns_read_as_the_drift_engine_reads_them():
    """One converter, one null rule: what `table_columns` hands the bundle and the monitor is
    what `appliance drift compute` gets when the engine reads the same Arrow column itself."""
    import kernels
    from kernels._columns import numerical

    table = pa.table({
        "i": pa.array([4, None, 6, 7], pa.int32()),
        "d": pa.array([decimal.Decimal("1.5"), None, decimal.Decimal("2"), None]),
        "b": pa.array([False, True, None, True]),
        "f": pa.chunked_array([pa.array([0.25, None], pa.float32()), pa.array([2.5, 3.5],
                                                                            pa.float32())]),
    })
    cols = table_columns(table, table.column_names, [])
    for name in table.column_names:
        engine = numerical(name, table.column(name), what="current")
        np.testing.assert_array_equal(cols[name], engine.astype(np.float64), err_msg=name)
        np.testing.assert_array_equal(cols[name], kernels.arrow_numbers(table.column(name)))
    # The drift engine's profile of the table and of its converted columns are one profile.
    assert (kernels.fit_profile(table, categorical=[]).to_bytes()
            == kernels.fit_profile(cols, categorical=[]).to_bytes())


def test_text_not_listed_as_categorical_and_missing_features_are_refused():
    table = pa.table({"s": ["a", "b"]})
    with pytest.raises(InvalidInput, match="feature 's' has type string, not a number"):
        table_columns(table, ["s"], [])
    with pytest.raises(InvalidInput, match="missing feature 'x'"):
        table_columns(table, ["x"], [])
