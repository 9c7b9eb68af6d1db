"""Ground-truth labels in the feedback log format, written by serving and by the CLI alike.

One Parquet file per delivery under ``{artifacts}/feedback/{deployment}/``, written under a
dot-prefixed temporary name and renamed, so readers never see half a file.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from appliance.names import check_name

TIMESTAMP = pa.timestamp("us", tz="UTC")
FEEDBACK_SCHEMA = pa.schema(
    [("request_id", pa.string()), ("row", pa.int32()), ("label", pa.int64()), ("ts", TIMESTAMP)]
)


def write_feedback(
    artifacts: Path,
    deployment: str,
    request_ids: str | Sequence[str] | pa.Array | pa.ChunkedArray,
    rows: Sequence[int] | np.ndarray | pa.Array | pa.ChunkedArray,
    labels: Sequence[int] | np.ndarray | pa.Array | pa.ChunkedArray,
    *,
    clock: Callable[[], int] = time.time_ns,
) -> Path:
    """Write one feedback file and return its path.

    Args:
        artifacts: the artifact root (``cfg.artifacts``).
        deployment: the deployment name (a folder under ``feedback/``).
        request_ids: the served request each label belongs to, or one id for all rows.
        rows: row indices inside those requests.
        labels: true classes, one per row.
        clock: current time in ns since the epoch (default ``time.time_ns``).
    """
    now = clock()
    n = len(labels)
    ids = [request_ids] * n if isinstance(request_ids, str) else request_ids
    table = pa.Table.from_arrays(
        [
            pa.array(ids, pa.string()) if not isinstance(ids, (pa.Array, pa.ChunkedArray))
            else ids.cast(pa.string()),
            pa.array(rows, pa.int32()) if not isinstance(rows, (pa.Array, pa.ChunkedArray))
            else rows.cast(pa.int32()),
            pa.array(labels, pa.int64()) if not isinstance(labels, (pa.Array, pa.ChunkedArray))
            else labels.cast(pa.int64()),
            pa.array(np.full(n, now // 1000, dtype=np.int64)).cast(TIMESTAMP),
        ],
        schema=FEEDBACK_SCHEMA,
    )
    # The deployment becomes a folder name: "../x" must not write outside feedback/.
    folder = Path(artifacts) / "feedback" / check_name("deployment name", deployment)
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{now:020d}-{uuid.uuid4().hex}.parquet"
    tmp = folder / f".tmp-{final.name}"
    pq.write_table(table, tmp)
    os.replace(tmp, final)
    return final
