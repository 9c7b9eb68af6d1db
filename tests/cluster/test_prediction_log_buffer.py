"""The buffered prediction log (`cluster.serve._prediction_log.PredictionLogBuffer`): real
Parquet files under tmp_path, real threads, and the monitor's real window cut over what it
wrote. A write is made to fail by putting a file where the log's folder belongs."""

from __future__ import annotations

import concurrent.futures as cf
import datetime as dt
import itertools
import re
import threading
import time

import loop_world as lw
import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from appliance.errors import InvalidInput
from appliance.monitor import windows
from appliance.monitor.windows import WindowPolicy
from cluster.serve._log_buffer import (
    LogBackpressure,
    LogClosed,
    LogWriteFailed,
    PredictionLogBuffer,
)
from cluster.serve._prediction_log import PredictionLog

D = "d"


@pytest.fixture
def art(tmp_path):
    return tmp_path / "art"


def make_log(art, clock=None) -> PredictionLog:
    return PredictionLog(art, deployment=D, model="scorer", version="1", features=lw.FEATURES,
                         categorical=lw.CATEGORICAL, **({"clock": clock} if clock else {}))


def request(n: int, seed: int = 0):
    rows = lw.draw(n, seed)
    return ({f: rows[f] for f in lw.FEATURES}, (rows["score"] >= 0.5).astype(np.int64),
            rows["score"])


def pending(art):
    return art / "predictions" / D / "pending"


def files(art) -> list:
    folder = pending(art)
    return sorted(folder.glob("*.parquet")) if folder.is_dir() else []


def logged(art) -> list[tuple[str, int]]:
    """(request id, row) of every logged row, sorted; a row logged twice shows twice."""
    got = []
    for path in files(art):
        t = pq.read_table(path, columns=["request_id", "row"])
        got += zip(t.column("request_id").to_pylist(), t.column("row").to_pylist(), strict=True)
    return sorted(got)


def rows_of(*requests: tuple[str, int]) -> list[tuple[str, int]]:
    return sorted((rid, j) for rid, n in requests for j in range(n))


def test_concurrent_appends_are_each_written_once_and_share_few_files(art):
    threads, per_thread, n = 8, 50, 3
    cols, preds, scores = request(n)
    start = threading.Barrier(threads)

    def serve(t: int) -> list[cf.Future]:
        start.wait()
        return [buf.append(f"t{t}-r{i}", cols, preds, scores) for i in range(per_thread)]

    with PredictionLogBuffer(make_log(art), flush_interval_s=0.2) as buf:
        with cf.ThreadPoolExecutor(threads) as pool:
            futures = [f for fs in pool.map(serve, range(threads)) for f in fs]
        buf.flush(timeout=10)
        assert all(f.done() for f in futures)
        assert (buf.backlog_rows, buf.rows_written) == (0, threads * per_thread * n)
    assert logged(art) == rows_of(*((f"t{t}-r{i}", n) for t in range(threads)
                                    for i in range(per_thread)))
    written = files(art)
    assert len(written) == buf.files_written <= 10  # 400 requests
    assert not list(pending(art).glob(".tmp-*"))
    # Each future names the file that holds its request.
    holds = {p: set(pq.read_table(p, columns=["request_id"]).column(0).to_pylist())
             for p in written}
    for t, i in [(0, 0), (3, 17), (7, 49)]:
        assert f"t{t}-r{i}" in holds[futures[t * per_thread + i].result()]


def test_append_only_queues_and_the_interval_writes_without_a_flush(art):
    with PredictionLogBuffer(make_log(art), flush_interval_s=60) as slow:
        queued = slow.append("r0", *request(2))
        time.sleep(0.05)
        assert not queued.done() and files(art) == [] and slow.backlog_rows == 2
    with PredictionLogBuffer(make_log(art), flush_interval_s=0.05) as buf:
        path = buf.append("r1", *request(3)).result(timeout=5)
        assert path.parent == pending(art) and buf.backlog_rows == 0
    assert logged(art) == rows_of(("r0", 2), ("r1", 3))


def test_max_file_rows_writes_at_once_and_files_hold_whole_requests(art):
    with PredictionLogBuffer(make_log(art), flush_interval_s=60, max_file_rows=10) as buf:
        futures = [buf.append(f"r{i}", *request(4, i)) for i in range(3)]
        # 12 rows queued >= 10: written now, as [r0, r1] and [r2], not split mid-request.
        paths = [f.result(timeout=5) for f in futures]
        assert paths[0] == paths[1] != paths[2]
        big = buf.append("big", *request(15)).result(timeout=5)
    assert pq.read_metadata(big).num_rows == 15
    assert sorted(pq.read_metadata(p).num_rows for p in files(art)) == [4, 8, 15]


def test_close_writes_what_is_queued_stops_the_thread_and_refuses_more(art):
    buf = PredictionLogBuffer(make_log(art), flush_interval_s=60)
    futures = [buf.append(f"r{i}", *request(2, i)) for i in range(5)]
    buf.close(timeout=10)
    assert all(f.done() and f.exception() is None for f in futures)
    assert logged(art) == rows_of(*((f"r{i}", 2) for i in range(5)))
    assert not any(t.name.endswith(buf.writer_id) for t in threading.enumerate())
    buf.close()
    with pytest.raises(LogClosed):
        buf.append("late", *request(1))


def test_backpressure_refuses_a_whole_request_and_queues_nothing_of_it(art):
    with PredictionLogBuffer(make_log(art), flush_interval_s=60, max_rows=10) as buf:
        buf.append("r0", *request(6))
        with pytest.raises(LogBackpressure, match="6 rows waiting") as refused:
            buf.append("r1", *request(5))
        assert refused.value.retry_after_s == 60
        assert (buf.backlog_rows, buf.rows_refused) == (6, 5)
        with pytest.raises(InvalidInput, match="max_rows=10"):
            buf.append("huge", *request(11))
        empty = buf.append("empty", *request(0))
        assert empty.result(timeout=0) is None and buf.backlog_rows == 6
        buf.flush(timeout=5)
        assert logged(art) == rows_of(("r0", 6))
        buf.append("r1", *request(5))  # the backlog was written: room again
    assert logged(art) == rows_of(("r0", 6), ("r1", 5))


def test_a_failed_write_fails_its_futures_keeps_its_rows_and_writes_them_once_recovered(art):
    blocker = pending(art)
    blocker.parent.mkdir(parents=True)
    blocker.write_text("a file where the log's folder belongs")
    with PredictionLogBuffer(make_log(art), flush_interval_s=60) as buf:
        first = buf.append("r0", *request(3))
        with pytest.raises(LogWriteFailed, match="3 prediction log rows") as failed:
            buf.flush(timeout=5)
        assert failed.value.kept and isinstance(failed.value.__cause__, OSError)
        assert isinstance(first.exception(timeout=0), LogWriteFailed)
        assert first.exception().kept and isinstance(first.exception().__cause__, OSError)
        assert (buf.backlog_rows, buf.write_failures, buf.files_written) == (3, 1, 0)
        assert buf.last_error is not None
        later = buf.append("r1", *request(2))
        blocker.unlink()
        buf.flush(timeout=5)
        assert later.result(timeout=0).exists() and buf.last_error is None
        assert (buf.backlog_rows, buf.rows_written, buf.files_written) == (0, 5, 1)
    assert logged(art) == rows_of(("r0", 3), ("r1", 2))


def test_without_retry_a_failed_write_drops_only_the_rows_it_refused(art):
    """A replica's mode: the failed requests were answered with an error, so their rows must
    never be logged later, and the next requests log normally once the disk is back."""
    blocker = pending(art)
    blocker.parent.mkdir(parents=True)
    blocker.write_text("in the way")
    with PredictionLogBuffer(make_log(art), flush_interval_s=0, retry_failed=False) as buf:
        refused = buf.append("r0", *request(3))
        error = refused.exception(timeout=5)
        assert isinstance(error, LogWriteFailed) and not error.kept
        assert "not logged" in str(error)
        assert (buf.backlog_rows, buf.rows_failed) == (0, 3)
        blocker.unlink()
        # flush_interval_s=0: written as soon as the writer is free, no flush needed.
        assert buf.append("r1", *request(2)).result(timeout=5).exists()
    assert logged(art) == rows_of(("r1", 2))


def test_a_failed_write_is_retried_on_the_interval(art):
    blocker = pending(art)
    blocker.parent.mkdir(parents=True)
    blocker.write_text("")
    with PredictionLogBuffer(make_log(art), flush_interval_s=0.05) as buf:
        first = buf.append("r0", *request(3))
        assert isinstance(first.exception(timeout=5), LogWriteFailed)
        blocker.unlink()
        # r0 is at the head of the queue: once r1 is written, so is r0.
        buf.append("r1", *request(2)).result(timeout=5)
        assert buf.backlog_rows == 0
    assert logged(art) == rows_of(("r0", 3), ("r1", 2))


def test_close_on_a_broken_disk_gives_up_loudly(art):
    blocker = pending(art)
    blocker.parent.mkdir(parents=True)
    blocker.write_text("")
    buf = PredictionLogBuffer(make_log(art), flush_interval_s=0.2)
    futures = [buf.append(f"r{i}", *request(3, i)) for i in range(2)]
    # Tries at about 0, 0.2 and 0.4 s: at 0.5 s the writer waits to retry, holding nothing.
    with pytest.raises(LogWriteFailed, match="6 prediction log rows.*lost") as gave_up:
        buf.close(timeout=0.5)
    assert not gave_up.value.kept and isinstance(gave_up.value.__cause__, OSError)
    assert all(isinstance(f.exception(timeout=0), LogWriteFailed) for f in futures)
    assert (buf.rows_lost, buf.backlog_rows, buf.rows_written) == (6, 0, 0)
    assert buf.write_failures >= 2  # retried until the deadline


def test_file_names_sort_in_time_order_and_never_collide(art):
    ticks = itertools.count(1_700_000_000_000_000_000, 1_000_000)
    a = PredictionLogBuffer(make_log(art, lambda: next(ticks)), flush_interval_s=60)
    # Another replica whose clock stands still, logging the same client-chosen request ids.
    b = PredictionLogBuffer(make_log(art, lambda: 1_700_000_000_000_000_000),
                            flush_interval_s=60)
    with a, b:
        for i in range(4):
            for buf in (a, b):
                buf.append(f"r{i}", *request(2, i))
                buf.flush(timeout=5)
    names = [p.name for p in files(art)]
    assert len(names) == 8 and a.writer_id != b.writer_id
    pattern = rf"(\d{{20}})-({a.writer_id}|{b.writer_id})-(\d{{8}})\.parquet"
    assert all(re.fullmatch(pattern, name) for name in names)
    first = [pc.min(pq.read_table(p, columns=["ts"]).column(0)).value for p in files(art)]
    assert first == sorted(first)
    assert [int(name[:20]) // 1000 for name in names] == first
    assert logged(art) == sorted(rows_of(*((f"r{i}", 2) for i in range(4))) * 2)


def test_the_monitor_cuts_windows_from_buffered_files(sqlite_url, art):
    seconds = itertools.count()

    def clock() -> int:
        return int((lw.T0 + dt.timedelta(seconds=next(seconds))).timestamp() * 1e9)

    with PredictionLogBuffer(make_log(art, clock), flush_interval_s=60) as buf:
        for i in range(30):
            buf.append(f"r{i:02d}", *request(10, i))
            if i % 5 == 4:
                buf.flush(timeout=5)  # files of 5 requests: 50 rows
        assert buf.files_written == 6
    root = art / "predictions"
    closed = lw.close_all(sqlite_url, root, D, WindowPolicy(rows=100, seconds=None),
                          now=lw.T0 + dt.timedelta(hours=1))
    assert [(w.index, w.rows, w.requests, w.closed_by) for w in closed] == [
        (k, 100, 10, "rows") for k in (1, 2, 3)]
    assert lw.window_requests(sqlite_url, D) == {
        k + 1: [f"r{i:02d}" for i in range(10 * k, 10 * k + 10)] for k in range(3)}
    got = []
    for window in closed:
        t = windows.read_window(window, ["request_id", "row"])
        got += zip(t.column("request_id").to_pylist(), t.column("row").to_pylist(), strict=True)
    assert sorted(got) == rows_of(*((f"r{i:02d}", 10) for i in range(30)))
    assert files(art) == []
