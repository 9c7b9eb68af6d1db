"""Late and corrected labels merged into their windows (`appliance.monitor.labels`): real
prediction and feedback files, a real store (SQLite; PostgreSQL where ids and rollbacks matter)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import loop_world as lw
import numpy as np
import pytest
from sqlmodel import select

from appliance.monitor import labels, windows
from appliance.monitor.feedback import write_feedback
from appliance.monitor.windows import WindowPolicy
from appliance.store import session_scope, utcnow
from appliance.store.models import FeedbackBatch, PredictionWindow

D = "d"
POLICY = WindowPolicy(rows=200, seconds=None)


def at(seconds: float) -> dt.datetime:
    return lw.T0 + dt.timedelta(seconds=seconds)


@pytest.fixture
def art(tmp_path):
    return tmp_path / "art"


def serve(art, db_url: str, names: list[str], start: float = 0) -> None:
    """Log requests of 100 rows, one a second, and close the windows that are due."""
    for i, name in enumerate(names):
        lw.log_rows(art, D, name, 100, at=at(start + i))
    lw.close_all(db_url, art / "predictions", D, POLICY, now=at(10**5))


def feedback(art, request_id: str, labels_: list[int], rows: list[int] | None = None) -> Path:
    rows = list(range(len(labels_))) if rows is None else rows
    return write_feedback(art, D, request_id, rows, labels_)


def apply(db_url: str, art, now: dt.datetime | None = None) -> tuple[list[int], int]:
    """One labels pass (index what arrived, merge it); (indexes of windows changed, matched)."""
    with session_scope(db_url) as s:
        labels.ingest(s, art / "feedback", D)
        touched, matched = labels.apply(s, art, D, now=now)
        changed = sorted(s.get(PredictionWindow, w).index for w in touched)
    return changed, matched


def got(art, index: int) -> dict[tuple[str, int], int]:
    table = labels.window_labels(art, D, index)
    if table is None:
        return {}
    return {(r, i): y for r, i, y in zip(table.column("request_id").to_pylist(),
                                         table.column("row").to_pylist(),
                                         table.column("label").to_pylist(), strict=True)}


def batches(db_url: str) -> list[tuple[str, int, int]]:
    with session_scope(db_url) as s:
        rows = s.exec(select(FeedbackBatch).order_by(FeedbackBatch.id)).all()
        return [(b.status, b.rows, b.matched_rows) for b in rows]


def test_labels_arriving_after_their_window_closed_are_merged_into_its_label_file(
    sqlite_url, art
):
    serve(art, sqlite_url, ["a", "b", "c", "d"])
    assert labels.window_labels(art, D, 1) is None
    feedback(art, "a", [1, 0, 1])
    assert apply(sqlite_url, art) == ([1], 3)
    feedback(art, "b", [0, 0])
    feedback(art, "c", [1])
    assert apply(sqlite_url, art) == ([1, 2], 3)
    assert got(art, 1) == {("a", 0): 1, ("a", 1): 0, ("a", 2): 1, ("b", 0): 0, ("b", 1): 0}
    assert got(art, 2) == {("c", 0): 1}
    assert labels.label_path(art, D, 1) == art / "labels" / D / "window-000001.parquet"
    assert batches(sqlite_url) == [("applied", 3, 3), ("applied", 2, 2), ("applied", 1, 1)]
    # Nothing new: nothing is read, nothing changes.
    assert apply(sqlite_url, art) == ([], 0)


def test_a_later_batch_corrects_an_earlier_one(sqlite_url, art):
    serve(art, sqlite_url, ["a", "b"])
    feedback(art, "a", [1, 1, 1])
    apply(sqlite_url, art)
    feedback(art, "a", [0], rows=[1])
    assert apply(sqlite_url, art) == ([1], 1)
    assert got(art, 1) == {("a", 0): 1, ("a", 1): 0, ("a", 2): 1}
    # A correction and its original arriving in the same pass: the later file wins too.
    feedback(art, "b", [1, 1])
    feedback(art, "b", [0, 0])
    apply(sqlite_url, art)
    assert got(art, 1)[("b", 0)] == 0 and got(art, 1)[("b", 1)] == 0


def test_applying_the_same_batches_twice_after_a_crash_changes_nothing(db_url, art):
    serve(art, db_url, ["a", "b", "c", "d"])
    feedback(art, "a", [1, 1, 1])
    apply(db_url, art)
    feedback(art, "a", [0], rows=[0])
    feedback(art, "c", [1, 0])
    with pytest.raises(RuntimeError), session_scope(db_url) as s:
        labels.ingest(s, art / "feedback", D)
        labels.apply(s, art, D)
        raise RuntimeError("killed before the commit")
    # The label files were written; the batches' status was not.
    after_crash = {1: got(art, 1), 2: got(art, 2)}
    assert after_crash[1][("a", 0)] == 0
    assert [s for s, _, _ in batches(db_url)] == ["applied"]

    assert apply(db_url, art) == ([1, 2], 3)
    assert {1: got(art, 1), 2: got(art, 2)} == after_crash
    assert got(art, 1) == {("a", 0): 0, ("a", 1): 1, ("a", 2): 1}
    assert got(art, 2) == {("c", 0): 1, ("c", 1): 0}
    assert batches(db_url) == [("applied", 3, 3), ("applied", 1, 1), ("applied", 2, 2)]
    assert labels.window_labels(art, D, 1).num_rows == 3


def test_a_label_for_a_pending_request_keeps_its_batch_partial_until_its_window_closes(
    sqlite_url, art
):
    serve(art, sqlite_url, ["a", "b", "c"])  # c is pending: the rows limit is 200
    with session_scope(sqlite_url) as s:
        assert windows.pending_rows(s, art / "predictions", D) == 100
    path = feedback(art, "a", [1, 0])
    write_feedback(art, D, ["a", "c", "c"], [2, 0, 1], [1, 1, 0])
    assert apply(sqlite_url, art) == ([1], 3)
    assert batches(sqlite_url) == [("applied", 2, 2), ("partial", 3, 1)]
    assert got(art, 1)[("a", 2)] == 1
    # Partial batches are tried again each pass; the one that is complete is not.
    path.unlink()
    apply(sqlite_url, art)
    assert batches(sqlite_url) == [("applied", 2, 2), ("partial", 3, 1)]

    serve(art, sqlite_url, ["d"], start=10)
    # Window 1's labels did not change when the batch was tried again: only window 2's did.
    assert apply(sqlite_url, art)[0] == [2]
    assert got(art, 2) == {("c", 0): 1, ("c", 1): 0}
    assert batches(sqlite_url) == [("applied", 2, 2), ("applied", 3, 3)]


def test_labels_that_never_find_their_request_expire_after_the_horizon(sqlite_url, art):
    serve(art, sqlite_url, ["a", "b"])
    path = feedback(art, "nobody-served-this", [1, 1])
    assert apply(sqlite_url, art) == ([], 0)
    assert batches(sqlite_url) == [("partial", 2, 0)]
    apply(sqlite_url, art, now=utcnow() + dt.timedelta(days=6))
    assert batches(sqlite_url) == [("partial", 2, 0)]
    later = utcnow() + dt.timedelta(seconds=labels.DEFAULT_HORIZON_S + 60)
    assert apply(sqlite_url, art, now=later) == ([], 0)
    assert batches(sqlite_url) == [("expired", 2, 0)]
    with session_scope(sqlite_url) as s:
        (batch,) = s.exec(select(FeedbackBatch)).all()
        assert batch.applied_at == later and batch.path == str(path)
    # An expired batch is never read again, even if its file goes away.
    path.unlink()
    assert apply(sqlite_url, art) == ([], 0)


def test_a_partial_batch_whose_file_was_removed_expires(sqlite_url, art):
    serve(art, sqlite_url, ["a", "b", "c"])
    path = feedback(art, "c", [1])
    apply(sqlite_url, art)
    assert batches(sqlite_url) == [("partial", 1, 0)]
    path.unlink()
    assert apply(sqlite_url, art) == ([], 0)
    assert batches(sqlite_url) == [("expired", 1, 0)]


def test_files_of_applied_batches_are_never_read_again(sqlite_url, art):
    serve(art, sqlite_url, ["a", "b", "c", "d"])
    for name in ("a", "b", "c", "d"):
        feedback(art, name, list(np.arange(100) % 2))
    assert apply(sqlite_url, art) == ([1, 2], 400)
    before = {1: got(art, 1), 2: got(art, 2)}
    # Delete every applied feedback file: the next pass neither fails nor changes a label,
    # because it reads none of them.
    for path in (art / "feedback" / D).glob("*.parquet"):
        path.unlink()
    assert apply(sqlite_url, art) == ([], 0)
    assert {1: got(art, 1), 2: got(art, 2)} == before
    assert [s for s, _, _ in batches(sqlite_url)] == ["applied"] * 4


def test_a_request_id_seen_in_two_windows_takes_its_labels_to_both(sqlite_url, art):
    serve(art, sqlite_url, ["same", "a"])
    serve(art, sqlite_url, ["b", "same"], start=10)
    assert lw.window_requests(sqlite_url, D) == {1: ["a", "same"], 2: ["b", "same"]}
    feedback(art, "same", [1, 0])
    # Ids are meant to be unique: a reused one is ambiguous, and both of its windows get the
    # label (each row counted once as matched).
    assert apply(sqlite_url, art) == ([1, 2], 2)
    assert got(art, 1) == got(art, 2) == {("same", 0): 1, ("same", 1): 0}


def test_a_partial_batch_tried_again_reports_no_window_whose_labels_did_not_change(
    sqlite_url, art
):
    serve(art, sqlite_url, ["a", "b"])
    write_feedback(art, D, ["a", "a", "never-served"], [0, 1, 0], [1, 0, 1])
    assert apply(sqlite_url, art) == ([1], 2)
    assert batches(sqlite_url) == [("partial", 3, 2)]
    before = labels.label_path(art, D, 1).stat().st_mtime_ns
    # Nothing arrived: no window's labels changed, so none is reported (or recomputed).
    assert apply(sqlite_url, art)[0] == []
    assert labels.label_path(art, D, 1).stat().st_mtime_ns == before


def test_labels_of_a_request_whose_shadow_rows_fell_into_the_next_window_reach_its_served_rows(
    sqlite_url, art
):
    # A shadow challenger's rows are logged apart, a moment after the served ones: the served
    # file of "b" reaches the rows limit, and its shadow file begins the next window.
    lw.log_rows(art, D, "a", 100, at=at(0))
    lw.log_rows(art, D, "b", 100, at=at(1))
    lw.log_rows(art, D, "b", 100, at=at(1.5), version=2, shadow=True)
    lw.log_rows(art, D, "c", 100, at=at(2))
    lw.log_rows(art, D, "d", 100, at=at(3))
    lw.close_all(sqlite_url, art / "predictions", D, POLICY, now=at(10))
    # The shadow file stays in the window of the request it shadows.
    assert lw.window_requests(sqlite_url, D) == {1: ["a", "b"], 2: ["c", "d"]}
    feedback(art, "b", [1, 0, 1])
    apply(sqlite_url, art)
    # The client was answered from window 1's rows: they are what accuracy and retraining use.
    assert got(art, 1) == {("b", 0): 1, ("b", 1): 0, ("b", 2): 1}
