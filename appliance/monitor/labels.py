"""Ground-truth labels, joined to the windows that hold their requests as they arrive.

Each feedback file (`appliance.monitor.feedback`) is read once when it arrives: its request ids
are looked up in the request index, and its labels are merged into one label file per window,
``labels/{deployment}/window-{index}.parquet`` (request_id, row, label, seq). `seq` is the
feedback batch's id, and a merge keeps the highest `seq` per (request_id, row), so a corrected
label wins, and applying a batch twice (after a crash) changes nothing. A label goes to every
closed window that holds its request (ids are meant to be unique; a shadow challenger's rows
may fall into the window after the answer's). The cost of a pass follows what arrived, not the
history: a file is read when it arrives, and moved to ``applied/`` once its labels landed, so
neither the folder listing nor the store's lookups grow with old feedback. Labels for requests
that no closed window holds yet (still pending) keep their batch "partial", and it is retried
each pass until they land or `horizon_s` has passed ("expired"). An unreadable file is moved to
``corrupt/`` and reported, so it cannot stop the others.
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


def ingest(
    session: Session, feedback_root: Path, deployment: str, *, now: dt.datetime | None = None,
) -> tuple[list[FeedbackBatch], list[Path]]:
    """Index the feedback files of `deployment` that arrived since the last pass.

    Returns the new batches ("new") and where unreadable files were moved (``corrupt/``).

    Args:
        session: open session; the caller commits.
        feedback_root: ``{artifacts}/feedback``.
        deployment: the deployment's name.
        now: when they were received (default `utcnow()`); the expiry horizon counts from it.
    """
    now = now or utcnow()
    listed = _visible(Path(feedback_root) / deployment)
    known: dict[str, str] = {}
    names = [str(p) for p in listed]
    for start in range(0, len(names), _LOOKUP_CHUNK):
        known.update(session.exec(select(FeedbackBatch.path, FeedbackBatch.status).where(
            col(FeedbackBatch.path).in_(names[start:start + _LOOKUP_CHUNK]))).all())
    added, moved = [], []
    for path in listed:
        if str(path) in known:
            if known[str(path)] in ("applied", "expired"):
                # Finished, but a crash came before `archive` moved it.
                _set_aside(path, "applied")
            continue
        try:
            rows = pq.read_metadata(path).num_rows
            names_in = set(pq.read_schema(path).names)
            if not {"request_id", "row", "label"} <= names_in:
                raise ValueError(f"columns {sorted(names_in)} lack request_id, row or label")
        except (pa.ArrowException, OSError, ValueError):
            moved.append(_set_aside(path, "corrupt"))
            continue
        batch = FeedbackBatch(deployment=deployment, path=str(path), rows=rows,
                              received_at=now)
        session.add(batch)
        added.append(batch)
    session.flush()
    return added, moved


def open_batch_ids(session: Session, deployment: str) -> list[int]:
    """Ids of the batches `apply` will work on ("new" or "partial")."""
    return list(session.exec(select(FeedbackBatch.id).where(
        FeedbackBatch.deployment == deployment,
        col(FeedbackBatch.status).in_(["new", "partial"]))).all())


def _set_aside(path: Path, folder: str) -> Path:
    target = path.parent / folder / path.name
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(path, target)
    return target


def archive(session: Session, deployment: str, batch_ids: list[int]) -> None:
    """Move the files of finished batches (applied, expired) to ``applied/``, after their
    status committed: a crash in between leaves a file the next `ingest` finds known."""
    for start in range(0, len(batch_ids), _LOOKUP_CHUNK):
        for batch in session.exec(select(FeedbackBatch).where(
                col(FeedbackBatch.id).in_(batch_ids[start:start + _LOOKUP_CHUNK]),
                col(FeedbackBatch.status).in_(["applied", "expired"]))).all():
            path = Path(batch.path)
            if path.is_file():
                _set_aside(path, "applied")


def _windows_of(session: Session, deployment: str, request_ids: list[str]
                ) -> pa.Table:
    """(request_id, window) pairs: every closed window that holds each request."""
    pairs: list[tuple[str, int]] = []
    for start in range(0, len(request_ids), _LOOKUP_CHUNK):
        chunk = request_ids[start:start + _LOOKUP_CHUNK]
        pairs += session.exec(
            select(RequestIndex.request_id, RequestIndex.window_id)
            .where(RequestIndex.deployment == deployment, col(RequestIndex.request_id).in_(chunk))
        ).all()
    return pa.table({"request_id": pa.array([p[0] for p in pairs], pa.string()),
                     "_window": pa.array([p[1] for p in pairs], pa.int64())})


def _merge(path: Path, new: pa.Table) -> bool:
    """Merge `new` labels into the label file at `path`; False when nothing changed."""
    old = pq.read_table(path).cast(LABEL_SCHEMA) if path.is_file() else None
    table = pa.concat_tables([new] if old is None else [old, new])
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
    if old is not None and out.equals(old):
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}")
    pq.write_table(out, tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return True


def apply(
    session: Session, artifacts: Path, deployment: str, *, now: dt.datetime | None = None,
    horizon_s: float = DEFAULT_HORIZON_S,
) -> tuple[set[int], int]:
    """Merge the labels of "new" and "partial" batches into their windows' label files.

    Label files are written before the caller commits the batches' status; a crash in
    between re-applies the same batches next time, which changes nothing (see `_merge`).

    Returns:
        (ids of the windows whose labels changed, label rows that found their request in
        this call for the first time).
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
    # A label row counts as matched once, whichever windows it reaches.
    matched = labels.filter(pc.is_in(labels.column("request_id"),
                                     value_set=where.column("request_id")))
    matched_by_batch: dict[int, int] = defaultdict(int)
    for seq, count in zip(*_counts(matched.column("seq")), strict=True):
        matched_by_batch[seq] += count
    labels = labels.join(where, keys="request_id", join_type="inner")
    touched: set[int] = set()
    window_ids = sorted(set(where.column("_window").to_pylist()))
    windows = {w.id: w for w in session.exec(
        select(PredictionWindow).where(col(PredictionWindow.id).in_(window_ids))
    ).all()} if window_ids else {}
    # A batch's first application always counts as a change: if a crash undid the commit
    # that followed its merge, the file already holds its labels but the metrics do not.
    first = pa.array([b.id for b in kept if b.status == "new"], pa.int64())
    for window_id in sorted(windows):
        part = labels.filter(pc.equal(labels.column("_window"), window_id))
        changed = _merge(label_path(artifacts, deployment, windows[window_id].index),
                         part.select(LABEL_SCHEMA.names))
        if changed or pc.any(pc.is_in(part.column("seq"), value_set=first)).as_py():
            touched.add(window_id)
    newly = 0
    for batch in kept:
        before, batch.matched_rows = batch.matched_rows, matched_by_batch.get(batch.id, 0)
        newly += max(0, batch.matched_rows - before)
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
    return touched, newly


def _counts(column: pa.ChunkedArray) -> tuple[list[int], list[int]]:
    counts = pc.value_counts(column)
    return counts.field("values").to_pylist(), counts.field("counts").to_pylist()


def window_labels(artifacts: Path, deployment: str, index: int) -> pa.Table | None:
    """The labels that arrived for window `index` (request_id, row, label), or None."""
    path = label_path(artifacts, deployment, index)
    if not path.is_file():
        return None
    return pq.read_table(path, columns=["request_id", "row", "label"])
