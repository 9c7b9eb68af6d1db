"""Windows cut inside a replica's journal segment (`appliance.monitor.windows`): a segment holds
many requests, and a window closed by rows takes the requests it needs and leaves the rest
pending, whatever the grouping of requests into files and however a close is interrupted."""

from __future__ import annotations

import datetime as dt
import shutil

import loop_world as lw
import numpy as np
import pyarrow.parquet as pq
import pytest
from sqlmodel import Session, create_engine, func, select

from appliance.monitor import log_files, windows
from appliance.monitor.windows import WindowPolicy
from appliance.store import session_scope
from appliance.store.models import PredictionWindow

D = "d"
BY_ROWS = WindowPolicy(rows=250, seconds=None)


def at(seconds: float) -> dt.datetime:
    return lw.T0 + dt.timedelta(seconds=seconds)


@pytest.fixture
def root(tmp_path):
    return tmp_path / "art" / "predictions"


def pending(root, deployment: str = D) -> list[str]:
    return [p.name for p in log_files.visible(root / deployment / "pending")]


def shape(db_url: str, deployment: str) -> list[tuple]:
    with session_scope(db_url) as s:
        return [(w.index, w.rows, w.shadow_rows, w.requests, w.closed_by)
                for w in s.exec(select(PredictionWindow).where(
                    PredictionWindow.deployment == deployment).order_by(PredictionWindow.index))]


def test_a_segment_of_many_requests_is_cut_at_the_request_that_reaches_the_limit(
    sqlite_url, root
):
    lw.log_segment(root.parent, D, [(f"r{i}", 100, False) for i in range(7)], at=at(0))
    assert len(pending(root)) == 1
    closed = lw.close_all(sqlite_url, root, D, BY_ROWS, now=at(10))
    # The same windows as seven files of one request each would give.
    assert [(w.index, w.rows, w.requests, w.closed_by) for w in closed] == [
        (1, 300, 3, "rows"), (2, 300, 3, "rows")]
    assert lw.window_requests(sqlite_url, D) == {1: ["r0", "r1", "r2"], 2: ["r3", "r4", "r5"]}
    (left,) = pending(root)
    table = log_files.read_log(root / D / "pending" / left)
    assert set(table.column("request_id").to_pylist()) == {"r6"} and table.num_rows == 100
    # The window files hold exactly their requests' rows, in the order they were logged.
    first = windows.read_window(closed[0])
    assert first.column("request_id").to_pylist() == [f"r{i}" for i in range(3) for _ in range(100)]
    assert first.column("row").to_pylist() == list(range(100)) * 3
    with session_scope(sqlite_url) as s:
        assert windows.pending_rows(s, root, D) == 100
        assert windows.close_next(s, root, D, BY_ROWS, at(10**6)) is None


def test_a_request_is_never_split_and_its_shadow_rows_go_with_it(sqlite_url, root):
    # Shadow rows of r1 are logged after r2's answer, in the same segment.
    lw.log_segment(root.parent, D, [("r0", 100, False), ("r1", 200, False), ("r2", 100, False),
                                    ("r1", 200, True), ("r3", 100, False)], at=at(0))
    closed = lw.close_all(sqlite_url, root, D, BY_ROWS, now=at(10))
    assert [(w.rows, w.shadow_rows, w.requests) for w in closed] == [(300, 200, 2)]
    assert lw.window_requests(sqlite_url, D) == {1: ["r0", "r1"]}
    with session_scope(sqlite_url) as s:
        assert windows.pending_rows(s, root, D) == 200


def test_a_tail_split_again_keeps_short_unique_names(sqlite_url, root):
    lw.log_segment(root.parent, D, [(f"r{i:02d}", 50, False) for i in range(40)], at=at(0))
    closed = lw.close_all(sqlite_url, root, D, WindowPolicy(rows=120, seconds=None), now=at(10))
    assert [w.rows for w in closed] == [150] * 13
    (left,) = pending(root)
    assert left.endswith(f"~{13 * 150:010d}{log_files.SEGMENT_SUFFIX}")
    assert left.count("~") == 1


def _stream(seed: int) -> list[list[tuple[str, int, float, bool]]]:
    """Requests as a replica logs them: (request id, rows, seconds after T0, shadow), each
    request with the shadow rows that a challenger scored for it, if any."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(60):
        request = [(f"q{i:02d}", int(rng.integers(1, 150)), float(i), False)]
        if rng.random() < 0.25:
            request.append((f"q{i:02d}", int(rng.integers(1, 150)), i + 0.5, True))
        out.append(request)
    return out


def _log_grouped(root, deployment: str, stream, sizes: list[int]) -> None:
    """Log `stream` as consecutive segments of `sizes` requests each."""
    start = 0
    for size in sizes:
        rows = [row for request in stream[start:start + size] for row in request]
        if rows:
            lw.log_segment(root.parent, deployment, [(r, n, sh) for r, n, _, sh in rows],
                           at=at(rows[0][2]))
        start += size


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_windows_by_rows_do_not_depend_on_how_requests_were_grouped_into_files(
    sqlite_url, root, seed
):
    stream = _stream(seed)
    rng = np.random.default_rng(seed + 100)
    policy = WindowPolicy(rows=400, seconds=None)
    # One file per request (and one for its shadow rows), closed once.
    for request in stream:
        for request_id, n, seconds, shadow in request:
            lw.log_rows(root.parent, "files", request_id, n, at=at(seconds), shadow=shadow)
    lw.close_all(sqlite_url, root, "files", policy, now=at(100))
    # Segments of 1 to 12 requests, all logged, closed once.
    sizes = [int(k) for k in rng.integers(1, 13, size=len(stream))]
    _log_grouped(root, "segments", stream, sizes)
    lw.close_all(sqlite_url, root, "segments", policy, now=at(100))
    # The same segments, closed after each one is published.
    start = 0
    for size in sizes:
        _log_grouped(root, "every", stream[start:start + size], [size])
        lw.close_all(sqlite_url, root, "every", policy, now=at(100))
        start += size

    expected = lw.window_requests(sqlite_url, "files")
    assert len(expected) >= 5
    assert lw.window_requests(sqlite_url, "segments") == expected
    assert lw.window_requests(sqlite_url, "every") == expected
    assert shape(sqlite_url, "segments") == shape(sqlite_url, "files")
    assert shape(sqlite_url, "every") == shape(sqlite_url, "files")
    with session_scope(sqlite_url) as s:
        left = {name: windows.pending_rows(s, root, name)
                for name in ("files", "segments", "every")}
    assert left["segments"] == left["every"] == left["files"]
    served = sum(n for request in stream for _, n, _, shadow in request if not shadow)
    assert sum(w[1] for w in shape(sqlite_url, "files")) + left["files"] == served


@pytest.mark.parametrize("crash", ["head written", "tail written", "split done"])
def test_a_close_interrupted_during_a_split_gives_the_same_windows(sqlite_url, root, crash):
    requests = [(f"r{i}", 100, False) for i in range(7)]
    lw.log_segment(root.parent, D, requests, at=at(0))
    (segment,) = (root / D / "pending").iterdir()
    whole = segment.read_bytes()
    # A close that is not committed: as if killed after the split, before the commit.
    engine = create_engine(sqlite_url)
    with Session(engine) as s:
        window, _ = windows.close_next(s, root, D, BY_ROWS, at(10))
        s.rollback()
    engine.dispose()
    staging = root / D / "closing-000001"
    assert (staging / segment.name).exists()
    (tail,) = pending(root)
    if crash != "split done":
        # Killed before the split removed the file it split (and, earlier, before the tail).
        segment.write_bytes(whole)
        if crash == "head written":
            (root / D / "pending" / tail).unlink()
    with session_scope(sqlite_url) as s:
        assert s.exec(select(func.count()).select_from(PredictionWindow)).one() == 0
        # Nothing is lost or counted twice while the close is undone.
        assert windows.pending_rows(s, root, D) == 700

    closed = lw.close_all(sqlite_url, root, D, BY_ROWS, now=at(10))
    assert [(w.index, w.rows, w.requests) for w in closed] == [(1, 300, 3), (2, 300, 3)]
    assert lw.window_requests(sqlite_url, D) == {1: ["r0", "r1", "r2"], 2: ["r3", "r4", "r5"]}
    assert not staging.exists()
    (left,) = pending(root)
    assert log_files.read_log(root / D / "pending" / left).column(
        "request_id").unique().to_pylist() == ["r6"]


def test_a_split_of_a_parquet_file_of_several_requests_stays_parquet(sqlite_url, root):
    # Tools may publish one Parquet file for many requests: it is split like a segment.
    lw.log_segment(root.parent, "src", [(f"r{i}", 100, False) for i in range(4)], at=at(0))
    (segment,) = (root / "src" / "pending").iterdir()
    target = root / D / "pending" / segment.name.replace(log_files.SEGMENT_SUFFIX, ".parquet")
    target.parent.mkdir(parents=True)
    pq.write_table(log_files.read_log(segment), target)
    shutil.rmtree(root / "src")
    closed = lw.close_all(sqlite_url, root, D, BY_ROWS, now=at(10))
    assert [(w.rows, w.requests) for w in closed] == [(300, 3)]
    (left,) = pending(root)
    assert left.endswith(".parquet")
    assert pq.read_table(root / D / "pending" / left).column("request_id").to_pylist() == (
        ["r3"] * 100)
