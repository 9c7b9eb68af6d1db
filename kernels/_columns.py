"""Turning caller columns into the arrays the statistics need, or a clear error.

Accepted column containers: a Mapping of name -> 1-D array-like (NumPy, CuPy, lists, pyarrow
Array/ChunkedArray), a pyarrow Table, or anything with `column_names`/`columns` and `__getitem__`
(a pandas DataFrame). pyarrow and pandas are never imported here; they are only duck-typed.

Categorical columns given as codes against a category list -- a pyarrow DictionaryArray (e.g.
`pq.read_table(..., read_dictionary=[...])`) or a pandas Categorical -- are counted with one
`bincount` over the codes, never one Python object per row, and give the same result as the
same values given as strings.

Missing values: NaN (and None / null) are missing; they are counted, never dropped silently.
Infinities are values (see `kernels` package docs for how each statistic treats them).

`arrow_numbers` is the one Arrow-to-NumPy converter for numerical columns, with the one null
rule (a null becomes NaN); the appliance's `appliance.tables.table_columns` calls it too, so a
column means the same to training, scoring and drift whichever path it took.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from kernels._errors import DriftInputError


def as_columns(columns: Any, *, what: str) -> dict[str, Any]:
    """Return `columns` as a dict of name -> column object; `what` names it in errors."""
    if isinstance(columns, Mapping):
        out = dict(columns)
    elif hasattr(columns, "column_names") and hasattr(columns, "column"):  # pyarrow Table
        out = {name: columns.column(name) for name in columns.column_names}
    elif hasattr(columns, "columns") and hasattr(columns, "__getitem__"):  # pandas DataFrame
        out = {str(name): _pandas_column(columns[name]) for name in columns.columns}
    else:
        raise DriftInputError(
            f"{what}: expected a mapping of column name -> array (or a pyarrow Table), "
            f"got {type(columns).__name__}"
        )
    if not out:
        raise DriftInputError(f"{what}: no columns given")
    for name in out:
        if not isinstance(name, str):
            raise DriftInputError(f"{what}: column names must be strings, got {name!r}")
    return out


def _pandas_column(series: Any) -> Any:
    # A categorical Series stays a pandas Categorical (codes + categories): to_numpy() would
    # build one Python object per row.
    if str(getattr(series, "dtype", "")) == "category":
        return series.array
    return series.to_numpy()


def column_length(values: Any) -> int:
    """Number of rows of one column object."""
    if hasattr(values, "shape") and values.shape is not None and len(values.shape) >= 1:
        return int(values.shape[0])
    return len(values)


def check_lengths(columns: Mapping[str, Any], *, what: str) -> int:
    """Return the common row count of `columns`, or raise naming the odd column out."""
    lengths = {name: column_length(v) for name, v in columns.items()}
    first_name, n = next(iter(lengths.items()))
    for name, m in lengths.items():
        if m != n:
            raise DriftInputError(
                f"{what}: column {name!r} has {m} rows but {first_name!r} has {n}; "
                "all columns of one window must have the same length"
            )
    if n == 0:
        raise DriftInputError(f"{what}: the window is empty (0 rows)")
    return n


def _is_arrow(values: Any) -> bool:
    return type(values).__module__.startswith("pyarrow")


_ARROW_NUMPY = {
    "double": np.float64, "float": np.float32, "halffloat": np.float16, "int8": np.int8,
    "int16": np.int16, "int32": np.int32, "int64": np.int64, "uint8": np.uint8,
    "uint16": np.uint16, "uint32": np.uint32, "uint64": np.uint64,
}


def _bits(buffer: Any, offset: int, n: int) -> np.ndarray:
    """n bits of an Arrow bitmap (validity or boolean values) from `offset`, as bools."""
    raw = np.frombuffer(buffer, dtype=np.uint8)
    return np.unpackbits(raw, bitorder="little")[offset : offset + n].astype(bool)


def _primitive(chunk: Any) -> np.ndarray:
    """The values of one fixed-width numerical pyarrow Array as a zero-copy NumPy view (what
    a null holds there is undefined).

    pyarrow's own to_numpy goes through its pandas conversion layer, and so does its cast,
    which import pandas (~38 MiB resident) even for a zero-copy view.
    """
    dtype = np.dtype(_ARROW_NUMPY[str(chunk.type)])
    return np.frombuffer(chunk.buffers()[1], dtype=dtype, count=len(chunk),
                         offset=chunk.offset * dtype.itemsize)


def _chunk_numbers(chunk: Any, kind: str) -> np.ndarray:
    """One chunk of `arrow_numbers`."""
    n = len(chunk)
    if kind == "null":
        return np.full(n, np.nan)
    if kind == "bool":
        values = _bits(chunk.buffers()[1], chunk.offset, n).astype(np.float64)
    elif kind in _ARROW_NUMPY:
        values = _primitive(chunk)
        if values.dtype.kind != "f":
            values = values.astype(np.float64)
        elif values.dtype.itemsize < 4:
            values = values.astype(np.float32)
    else:  # decimal: the one type NumPy cannot read; Arrow's cast (which loads pandas) does
        chunk = chunk.cast("double")
        values = _primitive(chunk)
    if chunk.null_count:
        values = np.where(_bits(chunk.buffers()[0], chunk.offset, n), values, np.nan)
    return values


def arrow_numbers(values: Any) -> np.ndarray | None:
    """A numerical pyarrow Array or ChunkedArray as a 1-D NumPy float array, by the one null
    rule every caller shares: a null becomes NaN.

    Integer, boolean, decimal and all-null columns become float64; float64 and float32 stay
    as they are (half floats become float32). A single null-free float chunk is a zero-copy
    view of Arrow's buffer (read-only when that is). pyarrow is duck-typed, never imported.

    Args:
        values: a pyarrow Array or ChunkedArray.

    Returns:
        The floats, or None when the column's type is not a number (text, dictionary, dates,
        nested): each caller words that error its own way.
    """
    kind = str(values.type)
    if not (kind in _ARROW_NUMPY or kind in ("bool", "null") or kind.startswith("decimal")):
        return None
    chunks = list(values.chunks) if hasattr(values, "chunks") else [values]
    parts = [_chunk_numbers(chunk, kind) for chunk in chunks]
    if not parts:
        return np.zeros(0, dtype=np.float32 if kind in ("float", "halffloat") else np.float64)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _is_cupy(values: Any) -> bool:
    return type(values).__module__.startswith("cupy")


def numerical(name: str, values: Any, *, what: str) -> Any:
    """Return `values` as a 1-D float32/float64 array (NumPy, or CuPy when given CuPy).

    Raises:
        DriftInputError: text or other non-numeric values, or not 1-D; the message names `name`.
    """
    if _is_cupy(values):
        arr = values
        if arr.ndim != 1:
            raise DriftInputError(f"{what}: feature {name!r} must be 1-D, got shape {arr.shape}")
        if arr.dtype.kind == "f":
            return arr if arr.dtype.itemsize >= 4 else arr.astype("float32")
        if arr.dtype.kind in "iub":
            return arr.astype("float64")
        raise DriftInputError(f"{what}: feature {name!r} has non-numeric dtype {arr.dtype}")
    if _is_arrow(values):
        arr = arrow_numbers(values)
        if arr is not None:
            return arr
        kind = str(getattr(values, "type", ""))
        if kind.startswith(("string", "large_string", "utf8", "dictionary", "binary")):
            raise DriftInputError(
                f"{what}: numerical feature {name!r} holds text (arrow type {kind}); "
                "name it as categorical or fix the column"
            )
        raise DriftInputError(f"{what}: feature {name!r} has unsupported arrow type {kind}")
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise DriftInputError(f"{what}: feature {name!r} must be 1-D, got shape {arr.shape}")
    if arr.dtype.kind == "f":
        return arr if arr.dtype.itemsize >= 4 else arr.astype(np.float32)
    if arr.dtype.kind in "iub":
        return arr.astype(np.float64)
    if arr.dtype.kind in "US":
        _text_error(name, arr[0] if arr.size else "", what=what)
    if arr.dtype.kind == "O":
        # float("1.5") would accept text; a column of objects must hold numbers or None.
        for v in arr.tolist():
            if v is not None and not isinstance(v, (int, float, np.integer, np.floating)):
                _text_error(name, v, what=what)
        return np.asarray(arr, dtype=np.float64)
    raise DriftInputError(f"{what}: feature {name!r} has unsupported dtype {arr.dtype}")


def _text_error(name: str, value: Any, *, what: str) -> None:
    raise DriftInputError(
        f"{what}: numerical feature {name!r} holds text, e.g. {value!r}; "
        "name it as categorical or fix the column"
    )


def _is_missing(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, float):
        return math.isnan(v)
    # pandas.NA / NaT and numpy datetime NaT, without importing pandas
    try:
        return bool(v != v)
    except Exception:
        return type(v).__name__ in ("NAType", "NaTType")


def category_key(v: Any) -> str:
    """The string key of one category value: ints and integral floats agree (1 == 1.0 -> "1")."""
    if isinstance(v, str):
        return v
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)) and math.isfinite(v) and float(v).is_integer():
        return str(int(v))
    return str(v)


def categorical(name: str, values: Any, *, what: str) -> tuple[list[str], np.ndarray, int]:
    """Count the categories of one column.

    Returns:
        (categories, counts, n_missing): category keys (strings, see `category_key`) sorted,
        their int64 counts, and the number of missing values (None, NaN, null).
    """
    if _is_cupy(values):
        values = values.get()
    if _is_arrow(values):
        if str(getattr(values, "type", "")).startswith("dictionary"):
            return _categorical_arrow_dictionary(values)
        return _categorical_arrow(values)
    if _is_pandas_categorical(values):
        return _categorical_codes(values.codes, values.categories.tolist())
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise DriftInputError(f"{what}: feature {name!r} must be 1-D, got shape {arr.shape}")
    n_missing = 0
    if arr.dtype.kind in "iub":
        uniq, cnt = np.unique(arr, return_counts=True)
        raw = list(zip(uniq.tolist(), cnt.tolist(), strict=True))
    elif arr.dtype.kind == "f":
        nan = np.isnan(arr)
        n_missing = int(np.count_nonzero(nan))
        uniq, cnt = np.unique(arr[~nan], return_counts=True)
        raw = list(zip(uniq.tolist(), cnt.tolist(), strict=True))
    elif arr.dtype.kind in "USO":
        # Counter hashes in C and strings cache their hash: linear time, unlike np.unique's
        # object sort that compares through Python.
        raw = []
        for v, c in collections.Counter(arr.tolist()).items():
            if _is_missing(v):
                n_missing += c
            else:
                raw.append((v, c))
    else:
        raise DriftInputError(f"{what}: feature {name!r} has unsupported dtype {arr.dtype}")
    return _merge_keys(raw, n_missing)


_CODES_BLOCK = 1 << 18


def _is_pandas_categorical(values: Any) -> bool:
    return (type(values).__module__.startswith("pandas") and hasattr(values, "codes")
            and hasattr(values, "categories"))


def _categorical_codes(
    codes: np.ndarray, categories: list[Any], n_missing: int = 0
) -> tuple[list[str], np.ndarray, int]:
    """Count integer codes into `categories` (code -1 = missing): one bincount, no per-row objects.
    """
    codes = np.asarray(codes)
    counts = np.zeros(len(categories), dtype=np.int64)
    # Blocks: bincount widens its input to intp, a copy of 8 bytes per row otherwise.
    for a in range(0, codes.shape[0], _CODES_BLOCK):
        block = codes[a : a + _CODES_BLOCK]
        if block.dtype.kind == "i" and block.shape[0] and block.min() < 0:
            valid = block[block >= 0]
            n_missing += block.shape[0] - valid.shape[0]
            block = valid
        counts += np.bincount(block, minlength=len(categories))[: len(categories)]
    raw = []
    for v, c in zip(categories, counts.tolist(), strict=False):
        if c == 0:
            continue  # a dictionary may list values that no row holds
        if _is_missing(v):
            n_missing += c
        else:
            raw.append((v, c))
    return _merge_keys(raw, n_missing)


def _categorical_arrow_dictionary(values: Any) -> tuple[list[str], np.ndarray, int]:
    # Chunks of a ChunkedArray may carry different dictionaries: count each against its own.
    chunks = values.chunks if hasattr(values, "chunks") else [values]
    raw: list[tuple[Any, int]] = []
    n_missing = 0
    for chunk in chunks:
        indices = chunk.indices
        n_missing += int(indices.null_count)
        if indices.null_count:
            indices = indices.drop_null()
        cats, counts, miss = _categorical_codes(
            _primitive(indices), chunk.dictionary.to_pylist()
        )
        n_missing += miss
        raw.extend(zip(cats, counts.tolist(), strict=True))
    return _merge_keys(raw, n_missing)


def _categorical_arrow(values: Any) -> tuple[list[str], np.ndarray, int]:
    n_missing = int(values.null_count)
    if hasattr(values, "combine_chunks"):
        values = values.combine_chunks()
    vc = values.value_counts()
    keys = vc.field("values").to_pylist()
    counts = vc.field("counts").to_pylist()
    pairs = [(k, c) for k, c in zip(keys, counts, strict=True) if k is not None]
    raw = [(k, c) for k, c in pairs if not _is_missing(k)]
    n_missing += sum(c for k, c in pairs if _is_missing(k))
    return _merge_keys(raw, n_missing)


def _merge_keys(raw: list[tuple[Any, int]], n_missing: int) -> tuple[list[str], np.ndarray, int]:
    merged: dict[str, int] = {}
    for v, c in raw:
        key = category_key(v)
        merged[key] = merged.get(key, 0) + int(c)
    cats = sorted(merged)
    return cats, np.array([merged[k] for k in cats], dtype=np.int64), n_missing
