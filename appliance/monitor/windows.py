"""Prediction windows: close the pending request logs of a deployment into one indexed window.

Serving writes one Parquet file per request into ``predictions/{deployment}/pending``. Closing
a window first renames those files into ``closing-{index}`` (atomic per file), compacts them into
``window-{index}.parquet`` (written under a temporary name and renamed), commits the index row,
and only then deletes the staging folder. A crash at any point leaves either the pending files or
a staging folder that the next close finishes, so no logged prediction is lost or counted twice.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlmodel import Session, func, select

from appliance.store.models import FeedbackBatch, PredictionWindow


def _visible(folder: Path) -> list[Path]:
    # Writers publish by renaming from a dot-prefixed temporary name, so skip those.
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.parquet") if not p.name.startswith("."))


def _read_many(paths: list[Path]) -> pa.Table:
    tables = [pq.read_table(p) for p in paths]
    return pa.concat_tables(tables, promote_options="default")


def _write_atomic(table: pa.Table, final: Path) -> None:
    tmp = final.with_name(f".tmp-{final.name}")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, final)


def _index_window(
    session: Session, deployment: str, index: int, path: Path, table: pa.Table
) -> PredictionWindow:
    ts = table.column("ts")
    window = PredictionWindow(
        deployment=deployment,
        index=index,
        path=str(path),
        rows=table.num_rows,
        requests=len(pc.unique(table.column("request_id"))),
        versions=sorted(str(v) for v in pc.unique(table.column("version")).to_pylist()),
        first_ts=pc.min(ts).as_py(),
        last_ts=pc.max(ts).as_py(),
    )
    session.add(window)
    session.flush()
    return window


def close_window(
    session: Session, predictions_root: Path, deployment: str
) -> tuple[PredictionWindow, pa.Table] | None:
    """Close everything pending for `deployment` into the next window.

    Returns the window's index row and its rows (so the caller need not read the file back),
    or None if nothing was pending.

    Args:
        session: open session; the caller commits.
        predictions_root: ``{artifacts}/predictions``.
        deployment: the deployment's name.
    """
    base = Path(predictions_root) / deployment
    last = session.exec(
        select(func.max(PredictionWindow.index)).where(PredictionWindow.deployment == deployment)
    ).one()
    index = (last or 0) + 1
    staging = base / f"closing-{index:06d}"
    # A staging folder for an index that is already committed is leftover cleanup.
    for old in sorted(base.glob("closing-*")) if base.is_dir() else []:
        if int(old.name.split("-")[1]) < index:
            shutil.rmtree(old, ignore_errors=True)
    pending = _visible(base / "pending")
    if pending:
        staging.mkdir(parents=True, exist_ok=True)
        for p in pending:
            os.replace(p, staging / p.name)
    staged = _visible(staging)
    if not staged:
        return None
    table = _read_many(staged)
    final = base / f"window-{index:06d}.parquet"
    _write_atomic(table, final)
    return _index_window(session, deployment, index, final, table), table


def finish_close(predictions_root: Path, deployment: str, index: int) -> None:
    """Remove the staging folder of a committed window."""
    shutil.rmtree(Path(predictions_root) / deployment / f"closing-{index:06d}", ignore_errors=True)


def ingest_feedback(session: Session, feedback_root: Path, deployment: str) -> int:
    """Index newly arrived feedback files of `deployment`; return how many rows they hold."""
    known = set(session.exec(
        select(FeedbackBatch.path).where(FeedbackBatch.deployment == deployment)
    ).all())
    added = 0
    for path in _visible(Path(feedback_root) / deployment):
        if str(path) in known:
            continue
        rows = pq.read_metadata(path).num_rows
        session.add(FeedbackBatch(deployment=deployment, path=str(path), rows=rows))
        added += rows
    session.flush()
    return added


def labels_for(session: Session, deployment: str) -> pa.Table | None:
    """All labels received for `deployment` (request_id, row, label), last one winning."""
    paths = [Path(p) for p in session.exec(
        select(FeedbackBatch.path).where(FeedbackBatch.deployment == deployment)
        .order_by(FeedbackBatch.id)
    ).all()]
    paths = [p for p in paths if p.is_file()]
    if not paths:
        return None
    table = _read_many(paths).select(["request_id", "row", "label"])
    # A corrected label arrives later: keep the last one per (request_id, row).
    table = table.append_column("_seq", pa.array(range(table.num_rows), pa.int64()))
    last = table.group_by(["request_id", "row"]).aggregate([("_seq", "max")])
    keep = pc.is_in(table.column("_seq"), value_set=last.column("_seq_max"))
    return table.filter(keep).drop_columns(["_seq"])


def read_window(window: PredictionWindow) -> pa.Table:
    return pq.read_table(window.path)
