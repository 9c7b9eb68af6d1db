"""A labelled table's label column as the targets a task scores or trains on, or InvalidInput
naming what is wrong with it: binary 0/1, multiclass classes (and their indices), regression
finite numbers. A label column holds no nulls: a row without its label can neither train nor
be scored.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from appliance.errors import InvalidInput


def label_column(table: pa.Table, label: str) -> pa.ChunkedArray:
    """The `label` column of `table`; InvalidInput when it is absent or has a null."""
    if label not in table.column_names:
        raise InvalidInput(f"label column {label!r} not found; the table has {table.column_names}")
    col = table.column(label)
    if col.null_count:
        raise InvalidInput(f"label column {label!r} has {col.null_count} missing value(s)")
    return col


def binary_labels(table: pa.Table, label: str) -> np.ndarray:
    """A binary classifier's labels: int64 0/1."""
    col = label_column(table, label)
    try:
        y = np.asarray(col.cast(pa.float64()).to_numpy(), dtype=np.float64)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InvalidInput(f"label column {label!r} must hold 0/1, got type {col.type}") from exc
    bad = ~np.isin(y, (0.0, 1.0))
    if bad.any():
        raise InvalidInput(
            f"label column {label!r} must hold 0/1 (binary classifier), got {y[bad][0]:g}; "
            f"is the task multiclass or regression?"
        )
    return y.astype(np.int64)


def class_values(table: pa.Table, label: str) -> list:
    """A multiclass label column as Python ints or strings (one kind for the whole column)."""
    col = label_column(table, label)
    if pa.types.is_dictionary(col.type):
        # Parquet written from a categorical column reads back dictionary-encoded: the same
        # classes as its plain values (appliance.registry.contract treats them alike too).
        col = col.cast(col.type.value_type)
    if pa.types.is_integer(col.type) or pa.types.is_boolean(col.type):
        return [int(v) for v in col.cast(pa.int64()).to_pylist()]
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        return col.to_pylist()
    raise InvalidInput(
        f"label column {label!r} must hold integer or string classes for a multiclass task, "
        f"got type {col.type}"
    )


def class_index(values: list, classes: list) -> np.ndarray:
    """Index of each value in `classes`; -1 for a class not among them."""
    index = {c: i for i, c in enumerate(classes)}
    return np.fromiter((index.get(v, -1) for v in values), np.int64, len(values))


def regression_values(table: pa.Table, label: str) -> np.ndarray:
    """A regressor's targets: finite float64."""
    col = label_column(table, label)
    try:
        y = np.asarray(col.cast(pa.float64()).to_numpy(), dtype=np.float64)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InvalidInput(
            f"label column {label!r} must hold numbers for a regression task, got type "
            f"{col.type}"
        ) from exc
    if not np.isfinite(y).all():
        raise InvalidInput(f"label column {label!r} holds a non-finite value")
    return y


def truth(table: pa.Table, label: str, task: str, classes: list | None = None) -> np.ndarray:
    """The labels a model of `task` is scored against, as
    `appliance.monitor.metrics.evaluation_metrics` takes them: binary 0/1, multiclass the index
    of each class in `classes` (-1 for a class the model never saw, which counts as wrong),
    regression the values.

    Raises:
        InvalidInput: the label column is absent, has a null, or holds what `task` cannot.
    """
    if task == "multiclass":
        return class_index(class_values(table, label), classes or [])
    if task == "regression":
        return regression_values(table, label)
    return binary_labels(table, label)
