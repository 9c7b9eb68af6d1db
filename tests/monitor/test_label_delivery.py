"""A file of labels an operator delivers (`appliance.monitor.label_delivery.add_labels`): the
permission checked first, the file checked, written in the feedback log format and audited,
and the labels joined to the served requests by the monitor's next labels pass.

Real parts: requests logged through the real prediction log and windows closed as the
monitor closes them (`loop_world`), the people of `governance_world`, SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt

import governance_world as gw
import loop_world as lw
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from appliance.config import Config
from appliance.errors import InvalidInput, PermissionDenied
from appliance.governance import audit
from appliance.governance.users import get_user
from appliance.monitor import labels, windows
from appliance.monitor.feedback import FEEDBACK_SCHEMA
from appliance.monitor.label_delivery import FeedbackPublic, add_labels
from appliance.store import session_scope

D = "credit"


def _cfg(url: str, tmp_path) -> Config:
    return Config(home=tmp_path, db_url=url, artifacts=tmp_path / "artifacts")


def _user(url: str, name: str):
    with session_scope(url) as s:
        return get_user(s, name)


def _delivered(cfg: Config) -> list[str]:
    folder = cfg.feedback_dir / D
    return sorted(p.name for p in folder.rglob("*")) if folder.exists() else []


def _audited(url: str) -> list[tuple[str, str, str, dict]]:
    with session_scope(url) as s:
        return [(e.actor, e.object_type, e.object_id, e.details)
                for e in audit.recent(s, 100, "feedback.")]


def test_labels_are_written_audited_and_joined_to_their_requests(db_url, tmp_path):
    cfg = _cfg(db_url, tmp_path)
    gw.people(db_url)
    # Two served requests (3 rows and 2), one closed window holding both.
    lw.log_rows(cfg.artifacts, D, "req-a", 3, at=lw.T0)
    lw.log_rows(cfg.artifacts, D, "req-b", 2, at=lw.T0 + dt.timedelta(seconds=1))
    [window] = lw.close_all(db_url, cfg.predictions_dir, D,
                            windows.WindowPolicy(rows=5, seconds=None),
                            now=lw.T0 + dt.timedelta(minutes=1))
    file = tmp_path / "labels.csv"
    file.write_text("request_id,row,label\nreq-a,0,1\nreq-a,1,0\nreq-a,2,1\nreq-b,1,0\n"
                    "req-unknown,0,1\n")

    out = add_labels(cfg, _user(db_url, "ops"), file, D)

    assert isinstance(out, FeedbackPublic)
    assert (out.deployment, out.rows) == (D, 5)
    written = pq.read_table(out.path)
    assert written.schema == FEEDBACK_SCHEMA
    assert written.select(["request_id", "row", "label"]).to_pylist() == [
        {"request_id": r, "row": i, "label": y}
        for r, i, y in [("req-a", 0, 1), ("req-a", 1, 0), ("req-a", 2, 1), ("req-b", 1, 0),
                        ("req-unknown", 0, 1)]]
    assert _delivered(cfg) == [out.path.rsplit("/", 1)[1]]
    name = out.path.rsplit("/", 1)[1]
    assert _audited(db_url) == [("ops", "deployment", D, {"rows": 5, "file": name})]

    # The monitor's labels pass finds each label's request through the request index.
    with session_scope(db_url) as s:
        labels.ingest(s, cfg.feedback_dir, D)
        touched, matched = labels.apply(s, cfg.artifacts, D)
    assert (touched, matched) == ({window.id}, 4)  # the unknown request matches nothing
    joined = labels.window_labels(cfg.artifacts, D, window.index)
    assert sorted(zip(joined["request_id"].to_pylist(), joined["row"].to_pylist(),
                      joined["label"].to_pylist(), strict=True)) == [
        ("req-a", 0, 1), ("req-a", 1, 0), ("req-a", 2, 1), ("req-b", 1, 0)]


def test_without_a_row_column_a_label_is_its_requests_first_row(sqlite_url, tmp_path):
    cfg = _cfg(sqlite_url, tmp_path)
    gw.people(sqlite_url)
    file = tmp_path / "labels.parquet"
    # Parquet this time, labels as small integers and ids as numbers: cast to the log's types.
    pq.write_table(pa.table({"request_id": pa.array([7, 8], pa.int64()),
                             "label": pa.array([1, 0], pa.int8())}), file)
    out = add_labels(cfg, _user(sqlite_url, "root"), file, D)  # an admin may operate too
    assert out.rows == 2
    assert pq.read_table(out.path).select(["request_id", "row", "label"]).to_pylist() == [
        {"request_id": "7", "row": 0, "label": 1}, {"request_id": "8", "row": 0, "label": 0}]


@pytest.mark.parametrize("who", ["viewer", "risk"])
def test_who_may_not_operate_is_refused_before_the_file_is_read(sqlite_url, tmp_path, who):
    cfg = _cfg(sqlite_url, tmp_path)
    gw.people(sqlite_url)
    # The file does not even exist: the refusal is about the person, not the file.
    with pytest.raises(PermissionDenied, match=f"user '{who}' has role .*'operate' needs"):
        add_labels(cfg, _user(sqlite_url, who), tmp_path / "missing.csv", D)
    assert _delivered(cfg) == [] and _audited(sqlite_url) == []


# id: (file name, its contents or None for no file at all, what the message must say)
BAD_FILES = {
    "no-file": ("missing.csv", None, "does not exist"),
    "suffix": ("labels.xlsx", "request_id,label\nr,1\n", "unsupported type; accepted"),
    "no-label": ("labels.csv", "request_id,row\nr,0\n", "lacks column(s) ['label']"),
    "no-request-id": ("labels.csv", "id,label\nr,1\n", "lacks column(s) ['request_id']"),
    "label-text": ("labels.csv", "request_id,label\nr,yes\n", "'label' must be integers"),
    "label-fraction": ("labels.csv", "request_id,label\nr,1.5\n", "'label' must be integers"),
    "label-empty": ("labels.csv", "request_id,label\nr,1\ns,\n",
                    "'label' has 1 empty value(s)"),
    "row-text": ("labels.csv", "request_id,row,label\nr,first,1\n", "'row' must be integers"),
    "row-too-big": ("labels.csv", "request_id,row,label\nr,4294967296,1\n",
                    "'row' must be integers"),
    "row-empty": ("labels.csv", "request_id,row,label\nr,,1\n", "'row' has 1 empty value(s)"),
}


@pytest.mark.parametrize(("name", "content", "says"), list(BAD_FILES.values()),
                         ids=list(BAD_FILES))
def test_a_bad_file_is_refused_naming_the_file_and_the_problem(sqlite_url, tmp_path, name,
                                                               content, says):
    cfg = _cfg(sqlite_url, tmp_path)
    gw.people(sqlite_url)
    file = tmp_path / name
    if content is not None:
        file.write_text(content)
    with pytest.raises(InvalidInput) as caught:
        add_labels(cfg, _user(sqlite_url, "ops"), file, D)
    message = str(caught.value)
    assert says in message and str(file) in message, message
    assert "\n" not in message
    assert _delivered(cfg) == [] and _audited(sqlite_url) == []


def test_a_deployment_name_that_is_no_name_is_refused(sqlite_url, tmp_path):
    cfg = _cfg(sqlite_url, tmp_path)
    gw.people(sqlite_url)
    file = tmp_path / "labels.csv"
    file.write_text("request_id,label\nr,1\n")
    with pytest.raises(InvalidInput, match="deployment name"):
        add_labels(cfg, _user(sqlite_url, "ops"), file, "../elsewhere")
    assert not (cfg.artifacts / "elsewhere").exists() and _audited(sqlite_url) == []


def test_labels_the_audit_log_could_not_record_are_not_left_behind(sqlite_url, tmp_path):
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    from appliance.store import get_engine
    from appliance.store.models import AuditEvent

    cfg = _cfg(sqlite_url, tmp_path)
    gw.people(sqlite_url)
    file = tmp_path / "labels.csv"
    file.write_text("request_id,label\nr,1\n")
    # The audit log cannot be written (its table is gone): the delivery fails as a whole.
    with get_engine(sqlite_url).begin() as conn:
        conn.execute(text(f"DROP TABLE {AuditEvent.__tablename__}"))
    with pytest.raises(OperationalError, match=AuditEvent.__tablename__):
        add_labels(cfg, _user(sqlite_url, "ops"), file, D)
    assert _delivered(cfg) == []
