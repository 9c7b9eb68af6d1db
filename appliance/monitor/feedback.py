"""Write ground-truth labels in the feedback log format that serving also writes."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def write_feedback(root: Path, deployment: str, request_ids, rows, labels) -> Path:
    """Atomically write one feedback file under ``{root}/{deployment}``; return its path."""
    n = len(labels)
    table = pa.table({
        "request_id": pa.array(request_ids, pa.string()),
        "row": pa.array(rows, pa.int32()),
        "label": pa.array(labels, pa.int64()),
        "ts": pa.array([time.time_ns() // 1000] * n, pa.timestamp("us", tz="UTC")),
    })
    folder = Path(root) / deployment
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{time.time_ns():020d}-{uuid.uuid4().hex}.parquet"
    tmp = folder / f".tmp-{final.name}"
    pq.write_table(table, tmp)
    os.replace(tmp, final)
    return final
