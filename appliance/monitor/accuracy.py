"""Live accuracy: a window's predictions joined with the labels that arrived for them."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc


def window_accuracy(window: pa.Table, labels: pa.Table | None) -> tuple[int, float | None]:
    """(labelled rows, accuracy over them or None) for `window` given `labels`."""
    if labels is None or labels.num_rows == 0:
        return 0, None
    joined = window.select(["request_id", "row", "prediction"]).join(
        labels, keys=["request_id", "row"], join_type="inner"
    )
    n = joined.num_rows
    if n == 0:
        return 0, None
    hits = pc.sum(pc.equal(joined.column("prediction"), joined.column("label"))).as_py()
    return n, hits / n


def accuracy_over(windows: list[pa.Table], labels: pa.Table | None) -> float | None:
    """Accuracy pooled over several windows (rows weighted equally)."""
    if not windows:
        return None
    n, acc = window_accuracy(pa.concat_tables(windows, promote_options="default"), labels)
    return acc if n else None
