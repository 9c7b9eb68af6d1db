"""Closing prediction windows, late and corrected labels, and live accuracy (SQLite, no Ray)."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from appliance.monitor import accuracy, windows
from appliance.monitor.feedback import write_feedback
from appliance.store import dispose_all, migrate, session_scope

UTC = dt.timezone.utc


@pytest.fixture()
def db(tmp_path):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    migrate(url)
    yield url
    dispose_all()


def _served(root, deployment, request_id, predictions, version="1", ns=0):
    n = len(predictions)
    table = pa.table({
        "request_id": pa.array([request_id] * n, pa.string()),
        "row": pa.array(range(n), pa.int32()),
        "ts": pa.array([dt.datetime(2026, 1, 1, tzinfo=UTC)] * n, pa.timestamp("us", tz="UTC")),
        "model": pa.array(["m"] * n), "version": pa.array([version] * n),
        "deployment": pa.array([deployment] * n),
        "x": pa.array([0.5] * n, pa.float64()),
        "prediction": pa.array(predictions, pa.int64()),
        "score": pa.array([0.7] * n, pa.float32()),
    })
    folder = root / deployment / "pending"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{ns:020d}-{request_id}.parquet"
    pq.write_table(table, path)
    return path


def test_pending_requests_become_one_window(db, tmp_path):
    root = tmp_path / "predictions"
    _served(root, "d", "a", [1, 0, 1], ns=1)
    _served(root, "d", "b", [0, 0], version="2", ns=2)
    (root / "d" / "pending" / ".tmp-half-written.parquet").write_bytes(b"PAR1garbage")
    with session_scope(db) as s:
        w, _ = windows.close_window(s, root, "d")
        assert (w.index, w.rows, w.requests, w.versions) == (1, 5, 2, ["1", "2"])
    windows.finish_close(root, "d", 1)
    assert [p.name for p in (root / "d" / "pending").iterdir()] == [".tmp-half-written.parquet"]
    with session_scope(db) as s:
        assert windows.close_window(s, root, "d") is None
    _served(root, "d", "c", [1], ns=3)
    with session_scope(db) as s:
        assert windows.close_window(s, root, "d")[0].index == 2


def test_a_close_that_crashed_before_commit_is_redone_without_loss(db, tmp_path):
    root = tmp_path / "predictions"
    _served(root, "d", "a", [1, 1], ns=1)
    with pytest.raises(RuntimeError), session_scope(db) as s:
        windows.close_window(s, root, "d")
        raise RuntimeError("crash before commit")
    # The files sit in the staging folder now; a new request arrives meanwhile.
    assert not list((root / "d" / "pending").glob("*.parquet"))
    _served(root, "d", "b", [0], ns=2)
    with session_scope(db) as s:
        w, _ = windows.close_window(s, root, "d")
        assert (w.index, w.rows, w.requests) == (1, 3, 2)


def test_labels_join_by_request_and_row_and_the_last_correction_wins(db, tmp_path):
    root = tmp_path / "predictions"
    _served(root, "d", "a", [1, 0, 1, 1], ns=1)
    with session_scope(db) as s:
        w, table = windows.close_window(s, root, "d")
        assert windows.read_window(w).equals(table)
    write_feedback(tmp_path, "d", "a", [0, 1, 2], [1, 0, 0], clock=lambda: 10)
    write_feedback(tmp_path, "d", ["a"], [2], [1], clock=lambda: 20)  # a corrected label
    write_feedback(tmp_path, "d", "unknown", [0], [1], clock=lambda: 30)
    with session_scope(db) as s:
        assert windows.ingest_feedback(s, tmp_path / "feedback", "d") == 5
        assert windows.ingest_feedback(s, tmp_path / "feedback", "d") == 0
        labels = windows.labels_for(s, "d")
    n, acc = accuracy.window_accuracy(table, labels)
    assert (n, acc) == (3, 1.0)
    assert accuracy.window_accuracy(table, None) == (0, None)
