"""A file of ground-truth labels an operator delivers (`appliance feedback add`): checked,
written in the feedback log format (`appliance.monitor.feedback`) and audited.

Serving's feedback route writes the same format for labels that arrive over HTTP.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from sqlmodel import SQLModel

from appliance.config import Config
from appliance.errors import InvalidInput
from appliance.governance import audit
from appliance.governance.operations import operation
from appliance.governance.users import require
from appliance.monitor.feedback import write_feedback
from appliance.names import check_name
from appliance.store import session_scope
from appliance.store.models import User
from appliance.tables import read_table


class FeedbackPublic(SQLModel):
    """A delivery of labels: for which deployment, how many rows, and the file written."""

    deployment: str
    rows: int
    path: str


def _integers(file: Path, table: pa.Table, column: str, kind: pa.DataType) -> pa.ChunkedArray:
    # Checked here, not left to the writer's cast: a bad cell is the file's fault (exit 2),
    # and an empty one would land as a label (or row) that is no integer at all.
    try:
        values = pc.cast(table.column(column), kind)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InvalidInput(f"feedback file {str(file)!r}: {column!r} must be integers "
                           f"({kind}): {exc}") from exc
    if values.null_count:
        raise InvalidInput(f"feedback file {str(file)!r}: {column!r} has "
                           f"{values.null_count} empty value(s)")
    return values


@operation("feedback.add")
def add_labels(cfg: Config, user: User, file: Path, deployment: str) -> FeedbackPublic:
    """Add the labels in `file` for `deployment`, joined later to served predictions by
    request id and row (the monitor does the join).

    Args:
        cfg: the configuration (artifacts, store).
        user: who delivers them; needs "operate".
        file: Parquet, CSV, TSV or Arrow with columns request_id and label (integers), and
            row (default 0: the request's first row).
        deployment: the deployment the labels are for.

    Raises:
        PermissionDenied: `user` may not operate (checked before the file is read).
        InvalidInput: a bad deployment name, an unreadable file, a missing column, an empty
            value, labels that are not integers, or rows that are not non-negative integers.
    """
    require(user, "operate")
    check_name("deployment name", deployment)
    table = read_table(file, role="feedback")
    missing = [c for c in ("request_id", "label") if c not in table.column_names]
    if missing:
        raise InvalidInput(f"feedback file {str(file)!r} lacks column(s) {missing}")
    # The checks the HTTP feedback route makes (`cluster.serve._oip.parse_feedback`): a request
    # with no id, a label with no value or a row that is no row index would be written and
    # counted as labelled.
    if table.column("request_id").null_count:
        raise InvalidInput(f"feedback file {str(file)!r}: 'request_id' has "
                           f"{table.column('request_id').null_count} empty value(s)")
    rows = (_integers(file, table, "row", pa.int32()) if "row" in table.column_names
            else pa.array([0] * table.num_rows, pa.int32()))
    if len(rows) and pc.min(rows).as_py() < 0:
        raise InvalidInput(f"feedback file {str(file)!r}: 'row' must be non-negative")
    labels = _integers(file, table, "label", pa.int64())
    path = None
    try:
        with session_scope(cfg.db_url) as session:
            path = write_feedback(cfg.artifacts, deployment, table.column("request_id"), rows,
                                  labels)
            audit.record(session, user.name, "feedback.added", "deployment", deployment,
                         {"rows": table.num_rows, "file": path.name})
    except BaseException:
        # Labels nobody audited would still be joined to predictions: none or both.
        if path is not None:
            path.unlink(missing_ok=True)
        raise
    return FeedbackPublic(deployment=deployment, rows=table.num_rows, path=str(path))
