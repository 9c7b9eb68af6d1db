"""Prediction traceability: one logged request, found through the request index, never a scan.

When a window closes, every request id it holds goes into the request index (`RequestIndex`,
indexed by request id on its own), so finding a request is one indexed query and one read of
the window file that holds it (`pyarrow` reads only the row groups whose statistics may hold
the id). A request answered moments ago whose window has not closed yet is still in its
deployment's pending files, at most one window's worth; only then are those read (`pending`
in the answer says so).

`show` answers "what did the model see, say, and who let it?": the inputs exactly as logged
(features, and any column serving only logs), output and score per row, the version that
answered (and a shadow challenger's rows, marked), that version's lineage (dataset, run,
approvals) and the label, if one arrived.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel
from sqlmodel import Session, col, select

from appliance.errors import NotFound
from appliance.monitor import labels, log_files
from appliance.monitor.windows import read_window
from appliance.registry.lineage import LineagePublic, lineage
from appliance.store.models import Deployment, PredictionWindow, RequestIndex

# The log's own columns: everything else in a row is an input as the request carried it.
LOG_COLUMNS = ("request_id", "client_id", "row", "ts", "model", "version", "deployment",
               "shadow", "prediction", "score")


class LoggedRow(BaseModel):
    """One logged row of a request: its inputs as logged, the answer, and its label."""

    row: int
    ts: dt.datetime | None
    version: str
    shadow: bool
    inputs: dict[str, Any]
    prediction: int | None
    score: float | None
    label: int | None


class TracedRequest(BaseModel):
    """Where a request's rows are and the rows themselves (what `show` and `explain` read)."""

    request_id: str
    client_id: str | None
    deployment: str
    model: str
    window: int | None
    pending: bool
    rows: list[LoggedRow]


class PredictionPublic(TracedRequest):
    """`appliance predictions show --json`: the request, and the lineage of each version that
    scored it (by version number as logged)."""

    lineage: dict[str, LineagePublic]


def _value(v: Any) -> Any:
    return v.isoformat() if isinstance(v, (dt.datetime, dt.date)) else v


def _rows(table: pa.Table, got: pa.Table | None) -> list[LoggedRow]:
    label_of: dict[int, int] = {}
    if got is not None and got.num_rows:
        for r, y in zip(got.column("row").to_pylist(), got.column("label").to_pylist(),
                        strict=True):
            label_of[int(r)] = int(y)
    out = []
    for rec in table.to_pylist():
        inputs = {k: _value(v) for k, v in rec.items() if k not in LOG_COLUMNS}
        out.append(LoggedRow(
            row=int(rec["row"]), ts=rec.get("ts"), version=str(rec["version"]),
            shadow=bool(rec.get("shadow") or False), inputs=inputs,
            prediction=rec.get("prediction"), score=rec.get("score"),
            label=label_of.get(int(rec["row"])) if not rec.get("shadow") else None,
        ))
    out.sort(key=lambda r: (r.shadow, r.version, r.row))
    return out


def _only(table: pa.Table, request_id: str) -> pa.Table:
    return table.filter(pc.equal(table.column("request_id"), request_id))


def _in_window(window: PredictionWindow, request_id: str) -> pa.Table:
    """The request's rows of a closed window: the file is re-hashed (`read_window`), then only
    its rows are kept."""
    return _only(read_window(window), request_id)


def _in_pending(predictions_root: Path, deployment: str, request_id: str) -> pa.Table | None:
    """The request's rows among a deployment's files no window holds yet (pending, or staged
    by a close in progress), or None."""
    base = Path(predictions_root) / deployment
    files = log_files.visible(base / "pending")
    for staging in sorted(base.glob("closing-*")) if base.is_dir() else []:
        files += log_files.visible(staging)
    found = []
    for path in files:
        try:
            table = log_files.read_log(path)
        except (pa.ArrowException, OSError):
            continue  # the monitor quarantines it; nothing of it can be shown
        rows = _only(table, request_id)
        if rows.num_rows:
            found.append(rows)
    return pa.concat_tables(found, promote_options="permissive") if found else None


def locate(session: Session, predictions_root: Path, artifacts: Path, request_id: str,
           deployment: str | None = None) -> TracedRequest:
    """The logged rows of `request_id` and the label of each, if one arrived.

    Args:
        session: open session.
        predictions_root: ``{artifacts}/predictions``.
        artifacts: the artifact root (label files).
        request_id: the id the appliance returned with the answer (``x-appliance-request-id``).
        deployment: only look in this deployment (default: any).

    Raises:
        NotFound: no logged request has this id.
    """
    query = select(RequestIndex).where(RequestIndex.request_id == request_id)
    if deployment:
        query = query.where(RequestIndex.deployment == deployment)
    hits = session.exec(query.order_by(RequestIndex.window_id)).all()
    tables, window_index, where = [], None, None
    for hit in hits:
        window = session.get(PredictionWindow, hit.window_id)
        rows = _in_window(window, request_id)
        if rows.num_rows:
            tables.append(rows)
            # The answer's window (a shadow's rows may fall in the next one).
            if window_index is None:
                window_index, where = window.index, window
    pending = False
    if not tables:
        names = [deployment] if deployment else sorted(set(session.exec(
            select(Deployment.name).where(col(Deployment.status) == "active")).all()))
        for name in names:
            rows = _in_pending(predictions_root, name, request_id)
            if rows is not None:
                tables.append(rows)
                pending = True
                break
    if not tables:
        raise NotFound(f"no logged prediction has request id {request_id!r}; it is the "
                       "x-appliance-request-id of an answer (rows are logged once served)")
    table = pa.concat_tables(tables, promote_options="permissive")
    first = table.slice(0, 1).to_pylist()[0]
    got = None
    if where is not None:
        window_labels = labels.window_labels(artifacts, where.deployment, where.index)
        if window_labels is not None:
            got = _only(window_labels, request_id)
    return TracedRequest(
        request_id=request_id, client_id=first.get("client_id"),
        deployment=str(first["deployment"]), model=str(first["model"]), window=window_index,
        pending=pending, rows=_rows(table, got),
    )


def show(session: Session, predictions_root: Path, artifacts: Path, request_id: str,
         deployment: str | None = None) -> PredictionPublic:
    """`locate`, with the lineage (dataset, run, approvals) of every version that scored it.

    Raises:
        NotFound: no logged request has this id.
    """
    found = locate(session, predictions_root, artifacts, request_id, deployment)
    versions = sorted({r.version for r in found.rows})
    return PredictionPublic(
        **found.model_dump(),
        lineage={v: lineage(session, f"{found.model}:{v}") for v in versions},
    )

