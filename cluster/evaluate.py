"""Scoring a model on labelled rows with its task's metrics: the one evaluation that training,
tuning, the promotion gate and explanations share. The metrics themselves are computed in one
place, `appliance.monitor.metrics.evaluation_metrics`, which live monitoring uses too.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from appliance.errors import InvalidInput
from appliance.monitor.metrics import evaluation_metrics
from appliance.tables import table_columns
from cluster.bundle import ModelBundle
from cluster.labels import truth


def evaluate(bundle: ModelBundle, table: pa.Table, label: str) -> dict[str, Any]:
    """Score `bundle` on the labelled `table` with its task's metrics.

    Args:
        bundle: the model to score.
        table: rows with the bundle's features (extra columns are ignored) and `label`.
        label: name of the target column.

    Returns:
        What `appliance.monitor.metrics.evaluation_metrics` returns for the bundle's task:
        binary {"accuracy", "auc", "log_loss", "rows"} (accuracy at the bundle's threshold,
        AUC None with one class only); multiclass {"accuracy", "macro_f1", "log_loss",
        "rows"} (a class the bundle never saw counts as wrong); regression {"rmse", "mae",
        "r2", "rows"}.

    Raises:
        InvalidInput: `table` is empty, or lacks a feature or the label, or a label the task
            cannot have.
    """
    if table.num_rows == 0:
        raise InvalidInput("cannot evaluate on an empty table (0 rows)")
    columns = table_columns(table, bundle.feature_names, bundle.categorical)
    out = bundle.score(columns)
    outputs = out.probabilities if bundle.task == "multiclass" else out.scores
    return evaluation_metrics(bundle.task, truth(table, label, bundle.task, bundle.classes),
                              outputs, threshold=bundle.threshold)
