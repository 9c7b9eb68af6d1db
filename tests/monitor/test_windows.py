"""Prediction windows cut by policy (`appliance.monitor.windows`): real Parquet files logged
through the real prediction log, a real store (SQLite; PostgreSQL where the index matters)."""

from __future__ import annotations

import datetime as dt
import shutil

import loop_world as lw
import numpy as np
import pyarrow.parquet as pq
import pytest
from sqlmodel import func, select

from appliance.monitor import windows
from appliance.monitor.windows import WindowPolicy
from appliance.store import session_scope
from appliance.store.models import PredictionWindow, RequestIndex

D = "d"
BY_ROWS = WindowPolicy(rows=250, seconds=None)


def at(seconds: float) -> dt.datetime:
    return lw.T0 + dt.timedelta(seconds=seconds)


@pytest.fixture
def art(tmp_path):
    return tmp_path / "art"


def log(art, request_id: str, n: int, when: dt.datetime, **kwargs) -> None:
    lw.log_rows(art, D, request_id, n, at=when, **kwargs)


def pending(art) -> list[str]:
    return sorted(p.name for p in (art / "predictions" / D / "pending").glob("*.parquet"))


def test_a_rows_window_holds_whole_files_and_closes_at_the_file_that_reaches_the_limit(
    sqlite_url, art
):
    for i in range(7):
        log(art, f"r{i}", 100, at(i))
    closed = lw.close_all(sqlite_url, art / "predictions", D, BY_ROWS, now=at(10))
    assert [(w.index, w.rows, w.requests, w.closed_by) for w in closed] == [
        (1, 300, 3, "rows"), (2, 300, 3, "rows")]
    assert lw.window_requests(sqlite_url, D) == {1: ["r0", "r1", "r2"], 2: ["r3", "r4", "r5"]}
    assert len(pending(art)) == 1
    with session_scope(sqlite_url) as s:
        assert windows.pending_rows(s, art / "predictions", D) == 100
        # The limit is not reached by the file left over: nothing more is due, however late.
        assert windows.close_next(s, art / "predictions", D, BY_ROWS, at(10**6)) is None


def test_a_file_past_first_ts_plus_seconds_starts_the_next_window(sqlite_url, art):
    policy = WindowPolicy(rows=None, seconds=3600)
    for name, seconds in [("a", 0), ("b", 600), ("c", 3599), ("d", 3600), ("e", 4200)]:
        log(art, name, 10, at(seconds))
    closed = lw.close_all(sqlite_url, art / "predictions", D, policy, now=at(4300))
    assert [(w.index, w.rows, w.closed_by) for w in closed] == [(1, 30, "seconds")]
    assert lw.window_requests(sqlite_url, D) == {1: ["a", "b", "c"]}
    assert (closed[0].first_ts, closed[0].last_ts) == (at(0), at(3599))
    # The second window began at d (3600 s): it is partial until `now` passes 3600 s later.
    assert lw.close_all(sqlite_url, art / "predictions", D, policy, now=at(7199)) == []
    closed = lw.close_all(sqlite_url, art / "predictions", D, policy, now=at(7200))
    assert [(w.index, w.rows, w.closed_by) for w in closed] == [(2, 20, "seconds")]
    assert lw.window_requests(sqlite_url, D)[2] == ["d", "e"]
    assert pending(art) == []


def test_with_both_limits_whichever_comes_first_closes_the_window(sqlite_url, art):
    policy = WindowPolicy(rows=250, seconds=3600)
    for i, seconds in enumerate([0, 60, 120, 180, 4200]):
        log(art, f"r{i}", 100, at(seconds))
    closed = lw.close_all(sqlite_url, art / "predictions", D, policy, now=at(4200))
    assert [(w.index, w.rows, w.closed_by) for w in closed] == [
        (1, 300, "rows"), (2, 100, "seconds")]
    assert lw.window_requests(sqlite_url, D) == {1: ["r0", "r1", "r2"], 2: ["r3"]}
    assert [name.split("-", 1)[1] for name in pending(art)] == ["r4.parquet"]


def test_shadow_rows_do_not_count_toward_the_rows_limit(sqlite_url, art):
    for i in range(3):
        log(art, f"r{i}", 100, at(2 * i), version=1)
        log(art, f"r{i}", 100, at(2 * i + 1), version=2, shadow=True)
    log(art, "r3", 100, at(6), version=1)
    closed = lw.close_all(sqlite_url, art / "predictions", D, BY_ROWS, now=at(10))
    (window,) = closed
    # 300 served rows reach the limit at r2's served file; the shadow rows ride along, r2's
    # too, which was logged a moment after the window's last answer.
    assert (window.rows, window.shadow_rows, window.requests) == (300, 300, 3)
    assert window.versions == ["1", "2"]
    table = windows.read_window(window)
    assert table.num_rows == 600
    assert int(np.sum(table.column("shadow").to_numpy(zero_copy_only=False))) == 300
    with session_scope(sqlite_url) as s:
        # Pending: r3 only.
        assert windows.pending_rows(s, art / "predictions", D) == 100


def _arrivals(seed: int) -> list[tuple[str, int, float, bool]]:
    """(request id, rows, seconds after T0, shadow) of a stream of files, in arrival order."""
    rng = np.random.default_rng(seed)
    out, clock = [], 0.0
    for i in range(40):
        clock += float(rng.integers(1, 900))
        out.append((f"q{i:02d}", int(rng.integers(20, 150)), clock, False))
        if rng.random() < 0.25:
            out.append((f"q{i:02d}", int(rng.integers(20, 150)), clock + 0.5, True))
    return out


@pytest.mark.parametrize("policy", [
    WindowPolicy(rows=400, seconds=None),
    WindowPolicy(rows=None, seconds=3600),
    WindowPolicy(rows=400, seconds=3600),
], ids=["rows", "seconds", "both"])
def test_closing_after_every_file_gives_the_same_windows_as_closing_once(
    sqlite_url, art, policy
):
    stream = _arrivals(seed=7)
    for request_id, n, seconds, shadow in stream:
        lw.log_rows(art, "every", request_id, n, at=at(seconds), shadow=shadow)
        lw.close_all(sqlite_url, art / "predictions", "every", policy, now=at(seconds))
    for request_id, n, seconds, shadow in stream:
        lw.log_rows(art, "once", request_id, n, at=at(seconds), shadow=shadow)
    lw.close_all(sqlite_url, art / "predictions", "once", policy, now=at(stream[-1][2]))

    every, once = lw.window_requests(sqlite_url, "every"), lw.window_requests(sqlite_url, "once")
    assert len(once) >= 4
    assert every == once
    with session_scope(sqlite_url) as s:
        shape = {
            name: [(w.index, w.rows, w.shadow_rows, w.closed_by, w.first_ts, w.last_ts)
                   for w in s.exec(select(PredictionWindow).where(
                       PredictionWindow.deployment == name).order_by(PredictionWindow.index))]
            for name in ("every", "once")
        }
        assert shape["every"] == shape["once"]
        left = {name: windows.pending_rows(s, art / "predictions", name)
                for name in ("every", "once")}
    assert left["every"] == left["once"]
    served = sum(n for _, n, _, shadow in stream if not shadow)
    assert sum(row[1] for row in shape["once"]) + left["once"] == served


@pytest.mark.parametrize("renamed", ["all", "first"])
def test_a_crash_after_the_renames_completes_the_same_window(sqlite_url, art, renamed):
    for i in range(3):
        log(art, f"r{i}", 100, at(i))
    root = art / "predictions"
    staging = root / D / "closing-000001"
    if renamed == "all":
        with pytest.raises(RuntimeError), session_scope(sqlite_url) as s:
            windows.close_next(s, root, D, BY_ROWS, at(5))
            raise RuntimeError("killed before the commit")
    else:
        # Killed in the middle of the renames: one file moved, the others still pending.
        staging.mkdir(parents=True)
        first = sorted((root / D / "pending").glob("*.parquet"))[0]
        first.rename(staging / first.name)
    assert len(list(staging.glob("*.parquet"))) == (3 if renamed == "all" else 1)
    with session_scope(sqlite_url) as s:
        assert s.exec(select(func.count()).select_from(PredictionWindow)).one() == 0
        # The staged rows are still pending: nothing is lost while the close is undone.
        assert windows.pending_rows(s, root, D) == 300
    # New traffic arrives before the next pass.
    log(art, "r3", 100, at(2.5))
    log(art, "r4", 100, at(3))

    closed = lw.close_all(sqlite_url, root, D, BY_ROWS, now=at(5))
    assert [(w.index, w.rows) for w in closed] == [(1, 300)]
    assert lw.window_requests(sqlite_url, D) == {1: ["r0", "r1", "r2"]}
    assert not staging.exists()
    table = pq.read_table(closed[0].path)
    assert sorted(set(table.column("request_id").to_pylist())) == ["r0", "r1", "r2"]
    with session_scope(sqlite_url) as s:
        assert windows.pending_rows(s, root, D) == 200


def test_a_leftover_staging_folder_of_a_committed_window_is_removed_and_not_counted(
    sqlite_url, art
):
    root = art / "predictions"
    for i in range(3):
        log(art, f"r{i}", 100, at(i))
    with session_scope(sqlite_url) as s:
        window, _ = windows.close_next(s, root, D, BY_ROWS, at(5))
    # Killed after the commit, before `finish_close`: the staged files are still there.
    staging = root / D / "closing-000001"
    assert len(list(staging.glob("*.parquet"))) == 3
    with session_scope(sqlite_url) as s:
        assert windows.pending_rows(s, root, D) == 0
    for i in range(3, 6):
        log(art, f"r{i}", 100, at(i))
    closed = lw.close_all(sqlite_url, root, D, BY_ROWS, now=at(10))
    assert [(w.index, w.rows) for w in closed] == [(2, 300)]
    assert lw.window_requests(sqlite_url, D) == {1: ["r0", "r1", "r2"], 2: ["r3", "r4", "r5"]}
    assert not staging.exists()


def test_the_request_index_holds_each_request_of_a_window_once(db_url, art):
    for i in range(4):
        log(art, f"r{i}", 100, at(i))
        log(art, f"r{i}", 100, at(i + 0.5), version=2, shadow=True)
    log(art, "r4", 100, at(4))
    closed = lw.close_all(db_url, art / "predictions", D, WindowPolicy(rows=200, seconds=None),
                          now=at(10))
    assert [(w.index, w.rows, w.shadow_rows, w.requests) for w in closed] == [
        (1, 200, 200, 2), (2, 200, 200, 2)]
    assert lw.window_requests(db_url, D) == {1: ["r0", "r1"], 2: ["r2", "r3"]}
    with session_scope(db_url) as s:
        # One row per (window, request), however many files and rows the request has.
        assert s.exec(select(func.count()).select_from(RequestIndex)).one() == 4
        assert windows.pending_rows(s, art / "predictions", D) == 100


def test_pending_rows_counts_served_rows_no_window_holds_yet(sqlite_url, art):
    root = art / "predictions"
    with session_scope(sqlite_url) as s:
        assert windows.pending_rows(s, root, D) == 0
    log(art, "a", 40, at(0))
    log(art, "a", 40, at(1), shadow=True, version=2)
    log(art, "b", 25, at(2))
    # A writer's half-published file is not counted, and not read.
    (root / D / "pending" / ".tmp-0123.parquet").write_bytes(b"PAR1 half written")
    with session_scope(sqlite_url) as s:
        assert windows.pending_rows(s, root, D) == 65
        assert windows.close_next(s, root, D, WindowPolicy(rows=1000, seconds=None),
                                  at(10)) is None


def test_an_unreadable_pending_file_raises_corrupt_log_and_quarantine_sets_it_aside(
    sqlite_url, art
):
    root = art / "predictions"
    log(art, "a", 100, at(0))
    bad = root / D / "pending" / f"{int(at(1).timestamp() * 1e9):020d}-bad.parquet"
    bad.write_bytes(b"not parquet at all")
    log(art, "b", 200, at(2))
    with session_scope(sqlite_url) as s, pytest.raises(windows.CorruptLog) as info:
        windows.close_next(s, root, D, BY_ROWS, at(5))
    assert info.value.path == bad
    assert bad.name in str(info.value)
    with session_scope(sqlite_url) as s, pytest.raises(windows.CorruptLog):
        windows.pending_rows(s, root, D)

    moved = windows.quarantine(info.value.path, root, D)
    assert moved == root / D / "corrupt" / bad.name
    assert moved.read_bytes() == b"not parquet at all" and not bad.exists()
    closed = lw.close_all(sqlite_url, root, D, BY_ROWS, now=at(5))
    assert [(w.index, w.rows) for w in closed] == [(1, 300)]
    assert lw.window_requests(sqlite_url, D) == {1: ["a", "b"]}


def test_a_closed_window_is_one_parquet_file_of_its_rows(sqlite_url, art):
    root = art / "predictions"
    rows = [lw.log_rows(art, D, f"r{i}", 100, at=at(i), seed=i) for i in range(3)]
    (window,) = lw.close_all(sqlite_url, root, D, BY_ROWS, now=at(5))
    assert window.path == str(root / D / "window-000001.parquet")
    table = windows.read_window(window, ["request_id", "row", "x1", "shadow"])
    assert table.column_names == ["request_id", "row", "x1", "shadow"]
    assert table.num_rows == 300
    got = sorted(zip(table.column("request_id").to_pylist(), table.column("row").to_pylist(),
                     table.column("x1").to_pylist(), strict=True))
    want = sorted((f"r{i}", j, float(r["x1"][j])) for i, r in enumerate(rows) for j in range(100))
    assert got == want
    assert not any(table.column("shadow").to_pylist())
    assert pending(art) == []
    shutil.rmtree(root / D / "pending")
    with session_scope(sqlite_url) as s:
        assert windows.pending_rows(s, root, D) == 0


def test_a_window_spanning_versions_whose_feature_types_differ_still_closes(sqlite_url, art):
    from cluster.serve._prediction_log import PredictionLog

    log(art, "v1", 100, at(0))
    # Version 2 was trained with x1 as a category: it logs x1 as text.
    rows = lw.draw(100, seed=5)
    ns = int(at(1).timestamp() * 1e9)
    v2 = PredictionLog(art, deployment=D, model="scorer", version="2", features=lw.FEATURES,
                       categorical=["x1", "c"], clock=lambda: ns)
    v2.write("v2", {"x1": rows["x1"].round(1).astype(str).astype(object), "x2": rows["x2"],
                    "c": rows["c"]}, (rows["score"] >= 0.5).astype(np.int64), rows["score"])
    log(art, "v1b", 100, at(2))
    closed = lw.close_all(sqlite_url, art / "predictions", D, BY_ROWS, now=at(5))
    assert [(w.index, w.rows, w.versions) for w in closed] == [(1, 300, ["1", "2"])]
