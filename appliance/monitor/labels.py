"""Ground-truth labels, joined to the windows that hold their requests as they arrive.

Each feedback file (`appliance.monitor.feedback`) is read once when it arrives: its request ids
are looked up in the request index, and its labels are merged into one label file per window,
``labels/{deployment}/window-{index}.parquet`` (request_id, row, label, seq). `seq` is the
feedback batch's id, and a merge keeps the highest `seq` per (request_id, row), so a corrected
label wins, and applying a batch twice (after a crash) changes nothing. The cost of a pass
follows what arrived, not the history: old feedback is never read again. Labels for requests
that no closed window holds yet (still pending) keep their batch "partial", and it is retried
each pass until they land or `horizon_s` has passed ("expired").
"""

from __future__ import annotations

import datetime as dt
import os
from collections import defaultdict
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlmodel import Session, col, select

from appliance.store.models import FeedbackBatch, PredictionWindow, RequestIndex, utcnow

LABEL_SCHEMA = pa.schema([("request_id", pa.string()), ("row", pa.int32()),
                          ("label", pa.int64()), ("seq", pa.int64())])
DEFAULT_HORIZON_S = 7 * 86400.0
_LOOKUP_CHUNK = 500


def label_path(artifacts: Path, deployment: str, index: int) -> Path:
    return Path(artifacts) / "labels" / deployment / f"window-{index:06d}.parquet"


def _visible(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.parquet") if not p.name.startswith("."))


def ingest(session: Session, feedback_root: Path, deployment: str) -> list[FeedbackBatch]:
    """Index feedback files of `deployment` that arrived since the last pass ("new" batches).

    Listing the folder is the only per-pass cost that grows with the number of files kept;
    the files themselves are read once, by `apply`.
    """
    known = set(session.exec(
        select(FeedbackBatch.path).where(FeedbackBatch.deployment == deployment)
    ).all())
    added = []
    for path in _visible(Path(feedback_root) / deployment):
        if str(path) in known:
            continue
        rows = pq.read_metadata(path).num_rows
        batch = FeedbackBatch(deployment=deployment, path=str(path), rows=rows)
        session.add(batch)
        added.append(batch)
    session.flush()
    return added


def _windows_of(session: Session, deployment: str, request_ids: list[str]) -> dict[str, int]:
    """request id -> id of the newest closed window holding it (ids may repeat over time)."""
    found: dict[str, tuple[int, int]] = {}
    for start in range(0, len(request_ids), _LOOKUP_CHUNK):
        chunk = request_ids[start:start + _LOOKUP_CHUNK]
        rows = session.exec(
            select(RequestIndex.request_id, RequestIndex.window_id, PredictionWindow.index)
            .join(PredictionWindow, PredictionWindow.id == RequestIndex.window_id)
            .where(RequestIndex.deployment == deployment, col(RequestIndex.request_id).in_(chunk))
        ).all()
        for request_id, window_id, index in rows:
            if request_id not in found or index > found[request_id][1]:
                found[request_id] = (window_id, index)
    return {rid: wid for rid, (wid, _) in found.items()}


def _merge(path: Path, new: pa.Table) -> None:
    parts = [new]
    if path.is_file():
        parts.insert(0, pq.read_table(path).cast(LABEL_SCHEMA))
    table = pa.concat_tables(parts)
    # Keep the newest label (highest seq) of each (request_id, row).
    table = table.append_column("_pos", pa.array(range(table.num_rows), pa.int64()))
    best = table.group_by(["request_id", "row"]).aggregate([("seq", "max")])
    joined = table.join(best, keys=["request_id", "row"], join_type="inner")
    joined = joined.filter(pc.equal(joined.column("seq"), joined.column("seq_max")))
    # Equal seq twice is the same batch applied twice: one copy is enough.
    firsts = joined.group_by(["request_id", "row"]).aggregate([("_pos", "min")])
    keep = pc.is_in(joined.column("_pos"), value_set=firsts.column("_pos_min"))
    out = joined.filter(keep).select(LABEL_SCHEMA.names).cast(LABEL_SCHEMA)
    out = out.sort_by([("request_id", "ascending"), ("row", "ascending")])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}")
    pq.write_table(out, tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def apply(
    session: Session, artifacts: Path, deployment: str, *, now: dt.datetime | None = None,
    horizon_s: float = DEFAULT_HORIZON_S,
) -> tuple[set[int], int]:
    """Merge the labels of "new" and "partial" batches into their windows' label files.

    Label files are written before the caller commits the batches' status; a crash in
    between re-applies the same batches next time, which changes nothing (see `_merge`).

    Returns:
        (ids of the windows whose labels changed, labelled rows matched this call).
    """
    now = now or utcnow()
    batches = session.exec(
        select(FeedbackBatch).where(
            FeedbackBatch.deployment == deployment,
            col(FeedbackBatch.status).in_(["new", "partial"]),
        ).order_by(FeedbackBatch.id)
    ).all()
    if not batches:
        return set(), 0
    tables, kept = [], []
    for batch in batches:
        path = Path(batch.path)
        if not path.is_file():
            batch.status, batch.applied_at = "expired", now
            session.add(batch)
            continue
        t = pq.read_table(path, columns=["request_id", "row", "label"])
        t = t.append_column("seq", pa.array([batch.id] * t.num_rows, pa.int64()))
        tables.append(t.cast(LABEL_SCHEMA))
        kept.append(batch)
    if not tables:
        return set(), 0
    labels = pa.concat_tables(tables)
    ids = pc.unique(labels.column("request_id")).to_pylist()
    where = _windows_of(session, deployment, ids)
    window_ids = pa.array([where.get(r) for r in labels.column("request_id").to_pylist()],
                          pa.int64())
    labels = labels.append_column("_window", window_ids)
    touched: set[int] = set()
    matched_by_batch: dict[int, int] = defaultdict(int)
    windows = {w.id: w for w in session.exec(
        select(PredictionWindow).where(col(PredictionWindow.id).in_(set(where.values())))
    ).all()} if where else {}
    for window_id in sorted(windows):
        part = labels.filter(pc.equal(labels.column("_window"), window_id))
        _merge(label_path(artifacts, deployment, windows[window_id].index),
               part.drop_columns(["_window"]))
        touched.add(window_id)
        for seq, count in zip(*_counts(part.column("seq")), strict=True):
            matched_by_batch[seq] += count
    for batch in kept:
        batch.matched_rows = matched_by_batch.get(batch.id, 0)
        received = batch.received_at
        if batch.matched_rows >= batch.rows:
            batch.status = "applied"
        elif (now - received).total_seconds() > horizon_s:
            batch.status = "expired"
        else:
            batch.status = "partial"
        if batch.status != "partial":
            batch.applied_at = now
        session.add(batch)
    session.flush()
    return touched, sum(matched_by_batch.values())


def _counts(column: pa.ChunkedArray) -> tuple[list[int], list[int]]:
    counts = pc.value_counts(column)
    return counts.field("values").to_pylist(), counts.field("counts").to_pylist()


def window_labels(artifacts: Path, deployment: str, index: int) -> pa.Table | None:
    """The labels that arrived for window `index` (request_id, row, label), or None."""
    path = label_path(artifacts, deployment, index)
    if not path.is_file():
        return None
    return pq.read_table(path, columns=["request_id", "row", "label"])
