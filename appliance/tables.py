"""Data files into Arrow tables, and Arrow tables into the NumPy columns a model or a drift
profile takes: one reader and one converter for every caller.

`read_table` accepts exactly the suffixes in `ACCEPTED` (Parquet, CSV, TSV, their gzip and bzip2
forms, Arrow IPC / Feather v2) and names that list when a file has another one.

`table_columns` has one rule for nulls, shared by training, gating, scoring and drift:

- a numerical column (integer, float, boolean, decimal or all-null) becomes float64 and its
  nulls become NaN (the bundle imputes NaN; the drift engine counts it as missing), through
  the drift engine's own converter (`kernels.arrow_numbers`), so that a file handed to
  `appliance drift compute` and a table the monitor converts read alike;
- a categorical column becomes an object array of ``str`` and its nulls stay ``None`` (the
  bundle encodes ``None`` as its own category, at training and at serving alike; the drift
  engine counts it as missing).

Anything else (text not listed as categorical, a nested type) is refused with InvalidInput.
pyarrow and NumPy are imported in the functions, not at the top: the CLI imports this module's
callers without paying for them (`appliance --help` must stay fast).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from appliance.errors import InvalidInput
from appliance.names import check_path

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

_PARQUET = (".parquet", ".pq", ".parq")
_CSV = (".csv", ".csv.gz", ".csv.bz2")
_TSV = (".tsv", ".tsv.gz", ".tsv.bz2")
_ARROW = (".arrow", ".feather", ".ipc")

# Every suffix `read_table` accepts, in the order error messages list them.
ACCEPTED: tuple[str, ...] = (*_PARQUET, *_CSV, *_TSV, *_ARROW)


def _kind(name: str) -> str | None:
    """"parquet", "csv", "tsv", "arrow", or None for a file name (any case)."""
    name = name.lower()
    for kind, suffixes in (("parquet", _PARQUET), ("csv", _CSV), ("tsv", _TSV),
                           ("arrow", _ARROW)):
        if name.endswith(suffixes):
            return kind
    return None


def read_table(path: str | Path, *, role: str = "data") -> pa.Table:
    """Read a data file into a pyarrow Table, its format chosen by its suffix.

    Args:
        path: the file; its suffix must be one of `ACCEPTED` (case-insensitive).
        role: what the file is, for messages (default "data": "data file '/x.csv' ...").

    Raises:
        InvalidInput: the path is unusable, the file is missing, its suffix is not accepted
            (the message lists `ACCEPTED`), or it cannot be parsed as its suffix says.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.ipc as ipc
    import pyarrow.parquet as pq

    path = Path(check_path(f"{role} file", path))
    if not path.is_file():
        raise InvalidInput(f"{role} file {str(path)!r} does not exist or is not a file")
    kind = _kind(path.name)
    if kind is None:
        raise InvalidInput(
            f"{role} file {str(path)!r} has an unsupported type; accepted: {', '.join(ACCEPTED)}"
        )
    try:
        if kind == "parquet":
            return pq.read_table(path)
        if kind == "arrow":
            return ipc.open_file(path).read_all()
        # pyarrow decompresses .gz and .bz2 by the file's suffix.
        opts = pacsv.ParseOptions(delimiter="\t" if kind == "tsv" else ",")
        return pacsv.read_csv(path, parse_options=opts)
    except (pa.ArrowException, OSError) as exc:
        raise InvalidInput(f"cannot read {role} file {str(path)!r} as {kind}: {exc}") from exc


def table_columns(
    table: pa.Table, features: list[str], categorical: list[str]
) -> dict[str, np.ndarray]:
    """`features` of `table` as NumPy columns, nulls per the module's rule.

    Args:
        table: the rows.
        features: the columns to convert, in order.
        categorical: which of them are categories (object arrays of str, nulls None); the
            others must be numerical (float64, nulls NaN).

    Raises:
        InvalidInput: a feature is absent, or a non-numerical one is not listed as categorical.
    """
    import numpy as np
    import pyarrow as pa

    # Deferred, as pyarrow: the CLI imports this module without the engine.
    from kernels import arrow_numbers

    out: dict[str, np.ndarray] = {}
    for name in features:
        if name not in table.column_names:
            raise InvalidInput(f"missing feature {name!r}; the table has {table.column_names}")
        col = table.column(name)
        if name in categorical:
            out[name] = np.array(col.cast(pa.string()).to_pylist(), dtype=object)
            continue
        values = arrow_numbers(col)
        if values is None:
            raise InvalidInput(
                f"feature {name!r} has type {col.type}, not a number; list it in categorical "
                f"if it is a category"
            )
        # A copy, writable: a null-free float64 column's view may be read-only.
        out[name] = values.astype(np.float64)
    return out
