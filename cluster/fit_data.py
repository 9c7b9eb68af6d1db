"""What every model kind's fit starts from: the design matrix and targets.

`prepare` checks a fit's arguments and turns a table into the design matrix and targets of the
rows that train (and of early stopping's validation slice), with the `Preprocessor` fitted on
the training rows only. Targets per task (`_targets`, from the label readers of
`cluster.labels`): binary 0/1, multiclass class indices (the sorted classes kept in the bundle),
regression the standardised label (its mean and std kept). How a fitted model is scored is
`cluster.evaluate`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pyarrow as pa

from appliance.errors import InvalidInput
from appliance.tables import table_columns
from cluster.bundle import TASKS, Preprocessor
from cluster.labels import binary_labels, class_index, class_values, label_column, regression_values

_MIN_ROWS = 10


def _targets(table: pa.Table, label: str, task: str) -> tuple[np.ndarray, dict[str, Any]]:
    """(what the network learns for each row, what the bundle must keep to undo it).

    binary: 0/1 as float32; multiclass: the class index as int64 (and the sorted classes);
    regression: the label standardised, as float32 (and its mean and std).
    """
    if task == "multiclass":
        values = class_values(table, label)
        classes = sorted(set(values))
        if len(classes) < 2:
            raise InvalidInput(
                f"label {label!r} has only class {classes[0]!r} in the training rows; "
                f"a classifier needs two or more"
            )
        return class_index(values, classes), {"classes": classes}
    if task == "regression":
        y = regression_values(table, label)
        mean, std = float(y.mean()), float(y.std()) or 1.0
        return ((y - mean) / std).astype(np.float32), {"target": (mean, std)}
    y = binary_labels(table, label)
    if y.min() == y.max():
        raise InvalidInput(
            f"label {label!r} has only class {int(y[0])} in the training rows; "
            f"a classifier needs both 0 and 1"
        )
    return y.astype(np.float32), {}


@dataclasses.dataclass
class Prepared:
    """The rows of a fit, ready for any kind: the design matrix and targets of the rows the
    model trains on and of the validation slice (None without early stopping), the fitted
    `Preprocessor`, what the bundle keeps to undo the targets (`_targets`), and which rows of
    the table each part holds."""

    pre: Preprocessor
    x_train: np.ndarray
    y_train: np.ndarray
    x_valid: np.ndarray | None
    y_valid: np.ndarray | None
    kept: dict[str, Any]
    train_idx: np.ndarray
    valid_idx: np.ndarray


def prepare(
    table: pa.Table, *, label: str, categorical: list[str], resolved: dict[str, Any],
    seed: int, num_workers: int, task: str,
) -> Prepared:
    """Check a fit's arguments and split `table` into the rows that train and the validation
    slice (only when resolved["early_stopping"]), as every model kind does.

    Raises:
        InvalidInput: bad arguments, columns or labels (the message names which).
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidInput(f"seed must be a non-negative integer, got {seed!r}")
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 1:
        raise InvalidInput(f"num_workers must be a positive integer, got {num_workers!r}")
    if not isinstance(table, pa.Table):
        raise InvalidInput(f"table must be a pyarrow.Table, got {type(table).__name__}")
    unknown = sorted(set(categorical) - set(table.column_names))
    if unknown:
        raise InvalidInput(f"categorical feature(s) {unknown} not in the table's columns")
    if label in categorical:
        raise InvalidInput(f"label {label!r} cannot also be a categorical feature")
    if task not in TASKS:
        raise InvalidInput(f"task must be one of {list(TASKS)}, got {task!r}")

    label_column(table, label)
    features = [c for c in table.column_names if c != label]
    if not features:
        raise InvalidInput(f"the table has no feature columns besides the label {label!r}")
    n = table.num_rows
    n_valid = max(1, round(n * resolved["valid_fraction"])) if resolved["early_stopping"] else 0
    if n - n_valid < max(_MIN_ROWS, num_workers):
        raise InvalidInput(
            f"too few rows to train: {n} rows leave {n - n_valid} after the validation slice "
            f"(need >= {max(_MIN_ROWS, num_workers)})"
        )
    # The validation slice is a seeded sample of the given rows, never of the holdout.
    order = np.random.default_rng([int(seed), 0xE5]).permutation(n)
    train_idx, valid_idx = np.sort(order[n_valid:]), np.sort(order[:n_valid])
    train_table = table.take(pa.array(train_idx))
    y_train, kept = _targets(train_table, label, task)
    # Preprocessor fitted on the rows the model trains on only, so no other row is seen.
    pre = Preprocessor.fit(table_columns(train_table, features, categorical), categorical)
    x_train = pre.transform(table_columns(train_table, pre.feature_names, categorical))
    x_valid = y_valid = None
    if n_valid:
        valid_table = table.take(pa.array(valid_idx))
        x_valid = pre.transform(table_columns(valid_table, pre.feature_names, categorical))
        if task == "multiclass":
            # A class only the slice holds is -1, which the loss ignores.
            y_valid = class_index(class_values(valid_table, label), kept["classes"])
        elif task == "regression":
            mean, std = kept["target"]
            y_valid = ((regression_values(valid_table, label) - mean) / std).astype(np.float32)
        else:
            y_valid = binary_labels(valid_table, label).astype(np.float32)
    return Prepared(pre, x_train, y_train, x_valid, y_valid, kept, train_idx, valid_idx)
