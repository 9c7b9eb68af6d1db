"""The replica's prediction log (`cluster.serve._log_buffer.PredictionLogBuffer`) and the
recovery of what a stopped writer left (`appliance.monitor.log_files`): real files under
tmp_path, real threads, a real process killed with SIGKILL, and the monitor's real window cut
over what they wrote. Failures are made by putting files where the log's files belong."""

from __future__ import annotations

import concurrent.futures as cf
import datetime as dt
import itertools
import os
import re
import signal
import subprocess
import sys
import threading
import time

import loop_world as lw
import numpy as np
import pyarrow.compute as pc
import pytest
from serve_helpers import logged_tables

from appliance.errors import InvalidInput
from appliance.monitor import log_files, windows
from appliance.monitor.windows import WindowPolicy
from cluster.serve._log_buffer import (
    LogBackpressure,
    LogClosed,
    LoggedRequest,
    LogWriteFailed,
    PredictionLogBuffer,
)
from cluster.serve._prediction_log import PredictionLog

D = "d"
T0_NS = 1_700_000_000_000_000_000


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
    """Published files."""
    return log_files.visible(pending(art))


def open_segments(art) -> list:
    folder = pending(art)
    return sorted(folder.glob(f"{log_files.OPEN_PREFIX}*")) if folder.is_dir() else []


def _pairs(tables) -> list[tuple[str, int]]:
    got = []
    for t in tables:
        got += zip(t.column("request_id").to_pylist(), t.column("row").to_pylist(), strict=True)
    return sorted(got)


def published_rows(art) -> list[tuple[str, int]]:
    """(request id, row) of every published row, sorted; a row published twice shows twice."""
    return _pairs(log_files.read_log(p, ["request_id", "row"]) for p in files(art))


def logged(art) -> list[tuple[str, int]]:
    """The same, open journal segments included: what a 200 promised."""
    return _pairs(logged_tables(pending(art), ["request_id", "row"]))


def rows_of(*requests: tuple[str, int]) -> list[tuple[str, int]]:
    return sorted((rid, j) for rid, n in requests for j in range(n))


def test_concurrent_appends_are_each_logged_once_and_share_few_files(art):
    threads, per_thread, n = 8, 50, 3
    cols, preds, scores = request(n)
    start = threading.Barrier(threads)

    def serve(t: int) -> None:
        start.wait()
        for i in range(per_thread):
            buf.append(f"t{t}-r{i}", cols, preds, scores)

    expected = rows_of(*((f"t{t}-r{i}", n) for t in range(threads) for i in range(per_thread)))
    with PredictionLogBuffer(make_log(art), flush_interval_s=60) as buf:
        with cf.ThreadPoolExecutor(threads) as pool:
            list(pool.map(serve, range(threads)))
        # Logged on return, before any publish: in the open segment, every row once.
        assert files(art) == [] and logged(art) == expected
        assert buf.backlog_rows == threads * per_thread * n
        buf.flush(timeout=10)
        assert (buf.backlog_rows, buf.rows_written, buf.files_written) == (
            0, threads * per_thread * n, 1)
    assert published_rows(art) == expected
    assert open_segments(art) == [] and not list(pending(art).glob(".tmp-*"))


def test_the_interval_publishes_without_a_flush(art):
    with PredictionLogBuffer(make_log(art), flush_interval_s=0.2) as buf:
        buf.append("r0", *request(2))
        buf.append("r1", *request(3))
        assert files(art) == [] and len(open_segments(art)) == 1
        deadline = time.monotonic() + 10
        while buf.backlog_rows and time.monotonic() < deadline:
            time.sleep(0.02)
        assert buf.backlog_rows == 0 and open_segments(art) == []
        assert published_rows(art) == rows_of(("r0", 2), ("r1", 3))
        # The next append opens the next segment.
        buf.append("r2", *request(1))
        assert len(open_segments(art)) == 1
    assert len(files(art)) == 2


def test_max_file_rows_publishes_at_once_and_files_hold_whole_requests(art):
    with PredictionLogBuffer(make_log(art), flush_interval_s=60, max_file_rows=10) as buf:
        for i in range(3):
            buf.append(f"r{i}", *request(4, i))
        buf.append("big", *request(15))
        deadline = time.monotonic() + 10
        # [r0, r1] (r2 would pass 10), then [r2] (big would), then [big] alone (15 >= 10).
        while buf.files_written < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert buf.files_written == 3
    assert [log_files.read_log(p).num_rows for p in files(art)] == [8, 4, 15]


def test_append_many_is_one_write_all_or_none(art):
    with PredictionLogBuffer(make_log(art), flush_interval_s=60, max_rows=10) as buf:
        buf.append_many([LoggedRequest(f"r{i}", *request(3, i)) for i in range(3)]
                        + [LoggedRequest("none", *request(0))])
        assert logged(art) == rows_of(("r0", 3), ("r1", 3), ("r2", 3))
        with pytest.raises(LogBackpressure):
            buf.append_many([LoggedRequest("a", *request(1)), LoggedRequest("b", *request(1))])
        with pytest.raises(InvalidInput, match="'huge'.*max_rows=10"):
            buf.append_many([LoggedRequest("c", *request(1)),
                             LoggedRequest("huge", *request(11))])
        assert buf.backlog_rows == 9 and buf.rows_refused == 2
    assert published_rows(art) == rows_of(("r0", 3), ("r1", 3), ("r2", 3))
    assert len(files(art)) == 1


def test_rows_of_several_requests_are_the_rows_of_each_in_order(art):
    """A scored batch becomes one record batch; it must hold exactly what one batch per
    request held: ids, client ids, shadow flags and row numbers per request, nothing shared."""
    log = make_log(art)
    reqs = [LoggedRequest("a", *request(3, 1)),
            LoggedRequest("b", *request(1, 2), shadow=True, client_id="mine"),
            LoggedRequest("c", *request(2, 3), client_id="x")]
    one = log.rows(reqs, now=T0_NS)
    each = [log.batch(r.request_id, r.columns, r.predictions, r.scores, shadow=r.shadow,
                      client_id=r.client_id, now=T0_NS) for r in reqs]
    assert one.to_pylist() == [row for b in each for row in b.to_pylist()]
    assert one.column("row").to_pylist() == [0, 1, 2, 0, 0, 1]
    assert one.column("shadow").to_pylist() == [False] * 3 + [True] + [False] * 2
    # The sizes' constant columns are kept: a second batch of the same size reuses them,
    # and a different shadow flag does not.
    again = log.rows([reqs[0]], now=T0_NS + 1)
    assert again.column("shadow").to_pylist() == [False] * 3
    shadowed = log.rows([LoggedRequest("s", *request(3, 1), shadow=True)], now=T0_NS)
    assert shadowed.column("shadow").to_pylist() == [True] * 3


def test_close_publishes_everything_stops_the_thread_and_refuses_more(art):
    buf = PredictionLogBuffer(make_log(art), flush_interval_s=60)
    for i in range(5):
        buf.append(f"r{i}", *request(2, i))
    buf.close(timeout=10)
    assert published_rows(art) == rows_of(*((f"r{i}", 2) for i in range(5)))
    assert open_segments(art) == []
    assert not any(t.name.endswith(buf.writer_id) for t in threading.enumerate())
    buf.close()
    with pytest.raises(LogClosed):
        buf.append("late", *request(1))


def test_backpressure_refuses_a_whole_request_and_writes_nothing_of_it(art):
    with PredictionLogBuffer(make_log(art), flush_interval_s=60, max_rows=10) as buf:
        buf.append("r0", *request(6))
        with pytest.raises(LogBackpressure, match="6 rows waiting") as refused:
            buf.append("r1", *request(5))
        assert refused.value.retry_after_s == 60
        assert (buf.backlog_rows, buf.rows_refused) == (6, 5)
        with pytest.raises(InvalidInput, match="max_rows=10"):
            buf.append("huge", *request(11))
        buf.append("empty", *request(0))
        assert buf.backlog_rows == 6 and logged(art) == rows_of(("r0", 6))
        buf.flush(timeout=5)
        buf.append("r1", *request(5))  # the backlog was published: room again
    assert published_rows(art) == rows_of(("r0", 6), ("r1", 5))


def test_a_failed_write_logs_nothing_of_it_and_the_next_one_logs(art):
    """The request whose write failed is answered with an error by the replica, so none of
    its rows may be logged, ever; once the disk is back, the next request logs normally."""
    blocker = pending(art)
    blocker.parent.mkdir(parents=True)
    blocker.write_text("a file where the log's folder belongs")
    with PredictionLogBuffer(make_log(art), flush_interval_s=0) as buf:
        with pytest.raises(LogWriteFailed, match="3 prediction rows.*not logged") as failed:
            buf.append("r0", *request(3))
        assert not failed.value.kept and isinstance(failed.value.__cause__, OSError)
        assert (buf.backlog_rows, buf.write_failures) == (0, 1)
        assert buf.last_error is not None
        blocker.unlink()
        buf.append("r1", *request(2))
        buf.flush(timeout=5)
        assert buf.last_error is None
    assert published_rows(art) == rows_of(("r1", 2))


def _block_publish(art, buf_clock_ns: int, writer_id: str, seq: int = 0):
    """A non-empty folder under the name segment `seq` will be published as: the rename
    fails until it goes."""
    target = pending(art) / f"{buf_clock_ns:020d}-{writer_id}-{seq:08d}.arrows"
    target.mkdir(parents=True)
    (target / "x").write_text("in the way")
    return target


def test_a_failed_publish_keeps_the_segment_and_publishes_it_once_when_it_can(art):
    buf = PredictionLogBuffer(make_log(art, lambda: T0_NS), flush_interval_s=0.05)
    with buf:
        blocker = _block_publish(art, T0_NS, buf.writer_id)
        buf.append("r0", *request(3))
        with pytest.raises(LogWriteFailed, match="3 prediction rows.*published later") as err:
            buf.flush(timeout=5)
        assert err.value.kept and isinstance(err.value.__cause__, OSError)
        assert buf.backlog_rows == 3 and buf.write_failures >= 1
        # Appends go on, into the next segment, while the first waits for its retry.
        buf.append("r1", *request(2))
        assert logged(art) == rows_of(("r0", 3), ("r1", 2))
        (blocker / "x").unlink()
        blocker.rmdir()
        buf.flush(timeout=5)
        assert buf.backlog_rows == 0 and buf.last_error is None
    assert published_rows(art) == rows_of(("r0", 3), ("r1", 2))


def test_close_on_a_broken_disk_leaves_the_rows_in_the_journal_for_recovery(art):
    buf = PredictionLogBuffer(make_log(art, lambda: T0_NS), flush_interval_s=0.2)
    blocker = _block_publish(art, T0_NS, buf.writer_id)
    for i in range(2):
        buf.append(f"r{i}", *request(3, i))
    with pytest.raises(LogWriteFailed, match="6 prediction rows.*published later") as gave_up:
        buf.close(timeout=1.2)
    # Tried at once and every 0.5 s until the deadline.
    assert gave_up.value.kept and buf.write_failures >= 2
    assert len(open_segments(art)) == 1 and files(art) == []
    (blocker / "x").unlink()
    blocker.rmdir()
    # Whoever recovers next (the next replica, the monitor) publishes them, once.
    recovered = log_files.recover_segments(pending(art))
    assert recovered == files(art) and log_files.recover_segments(pending(art)) == []
    assert published_rows(art) == rows_of(("r0", 3), ("r1", 3))


def test_recovery_leaves_a_live_writers_segment_alone(art):
    with PredictionLogBuffer(make_log(art), flush_interval_s=60) as buf:
        buf.append("r0", *request(2))
        assert log_files.recover_segments(pending(art)) == []
        assert len(open_segments(art)) == 1
        buf.append("r1", *request(2))
    assert published_rows(art) == rows_of(("r0", 2), ("r1", 2))


def test_recovery_between_a_new_segments_creation_and_its_lock_takes_nothing(art, monkeypatch):
    """A monitor that scans the folder while a writer has created its next segment and not
    yet locked it must not take that segment for a dead writer's (its rows would go to a
    deleted file)."""
    from cluster.serve import _log_buffer

    real_flock = _log_buffer.fcntl.flock
    raced = []

    def flock_after_a_recovery(fd, operation):
        raced.append(log_files.recover_segments(pending(art)))
        return real_flock(fd, operation)

    monkeypatch.setattr(_log_buffer.fcntl, "flock", flock_after_a_recovery)
    with PredictionLogBuffer(make_log(art), flush_interval_s=60) as buf:
        buf.append("r0", *request(2))
        buf.append("r1", *request(3))
        assert raced == [[]] and len(open_segments(art)) == 1
        assert logged(art) == rows_of(("r0", 2), ("r1", 3))
    assert published_rows(art) == rows_of(("r0", 2), ("r1", 3))


def test_an_open_segment_removed_by_hand_is_still_published_once(art, caplog):
    with PredictionLogBuffer(make_log(art), flush_interval_s=60) as buf:
        buf.append("r0", *request(2))
        buf.append("r1", *request(3))
        (segment,) = open_segments(art)
        segment.unlink()
        buf.flush(timeout=5)
        assert buf.backlog_rows == 0 and buf.write_failures == 0
        buf.append("r2", *request(1))
    assert published_rows(art) == rows_of(("r0", 2), ("r1", 3), ("r2", 1))
    assert "was removed" in caplog.text and not list(pending(art).glob(".tmp-*"))


def test_a_segment_published_by_another_process_does_not_stall_the_next(art):
    with PredictionLogBuffer(make_log(art), flush_interval_s=60) as buf:
        buf.append("r0", *request(2))
        (segment,) = open_segments(art)
        segment.rename(segment.with_name(segment.name[len(log_files.OPEN_PREFIX):]))
        buf.flush(timeout=5)
        buf.append("r1", *request(1))
        buf.flush(timeout=5)
        assert buf.backlog_rows == 0 and buf.write_failures == 0
    assert published_rows(art) == rows_of(("r0", 2), ("r1", 1))


_WRITER = """
import os, sys
sys.path.insert(0, {tests!r})
import loop_world as lw
from cluster.serve._log_buffer import PredictionLogBuffer
from cluster.serve._prediction_log import PredictionLog
from pathlib import Path
log = PredictionLog(Path({art!r}), deployment="d", model="scorer", version="1",
                    features=lw.FEATURES, categorical=lw.CATEGORICAL)
buf = PredictionLogBuffer(log, flush_interval_s=3600)
for i in range(4):
    rows = lw.draw(2, i)
    buf.append(f"r{{i}}", {{f: rows[f] for f in lw.FEATURES}},
               (rows["score"] >= 0.5).astype("int64"), rows["score"])
print("answered", flush=True)
sys.stdin.read()
"""


def test_a_killed_writers_answered_rows_are_recovered_once_and_a_torn_write_is_cut(art):
    tests = os.path.dirname(os.path.dirname(os.path.abspath(lw.__file__)))
    script = _WRITER.format(tests=os.path.dirname(os.path.abspath(lw.__file__)), art=str(art))
    child = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, cwd=tests)
    try:
        assert child.stdout.readline().strip() == "answered"
        # Alive: its segment is locked, recovery leaves it.
        assert log_files.recover_segments(pending(art)) == []
        (segment,) = open_segments(art)
        # The kill lands in the middle of a fifth write: a torn message at the end.
        whole = segment.read_bytes()
        with open(segment, "ab") as fh:
            fh.write(whole[-200:-50])
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    assert logged(art) == rows_of(*((f"r{i}", 2) for i in range(4)))
    (recovered,) = log_files.recover_segments(pending(art))
    assert recovered.stat().st_size == len(whole)
    assert log_files.recover_segments(pending(art)) == [] and open_segments(art) == []
    assert published_rows(art) == rows_of(*((f"r{i}", 2) for i in range(4)))


def test_an_orphan_segment_without_a_whole_row_is_removed(art):
    folder = pending(art)
    folder.mkdir(parents=True)
    schema = make_log(art).schema.serialize().to_pybytes()
    (folder / f"{log_files.OPEN_PREFIX}{T0_NS:020d}-dead-00000000.arrows").write_bytes(
        schema[:-7])
    (folder / f"{log_files.OPEN_PREFIX}{T0_NS:020d}-dead-00000001.arrows").write_bytes(schema)
    assert log_files.recover_segments(folder) == [] and open_segments(art) == []


def test_file_names_sort_in_time_order_and_never_collide(art):
    ticks = itertools.count(T0_NS, 1_000_000)
    a = PredictionLogBuffer(make_log(art, lambda: next(ticks)), flush_interval_s=60)
    # Another replica whose clock stands still, logging the same client-chosen request ids.
    b = PredictionLogBuffer(make_log(art, lambda: T0_NS), flush_interval_s=60)
    with a, b:
        for i in range(4):
            for buf in (a, b):
                buf.append(f"r{i}", *request(2, i))
                buf.flush(timeout=5)
    names = [p.name for p in files(art)]
    assert len(names) == 8 and a.writer_id != b.writer_id
    pattern = rf"(\d{{20}})-({a.writer_id}|{b.writer_id})-(\d{{8}})\.arrows"
    assert all(re.fullmatch(pattern, name) for name in names)
    first = [pc.min(log_files.read_log(p, ["ts"]).column(0)).value for p in files(art)]
    assert first == sorted(first)
    assert [int(name[:20]) // 1000 for name in names] == first
    assert published_rows(art) == sorted(rows_of(*((f"r{i}", 2) for i in range(4))) * 2)


def test_the_monitor_cuts_windows_from_segments_and_recovers_orphans(sqlite_url, art):
    seconds = itertools.count()

    def clock() -> int:
        return int((lw.T0 + dt.timedelta(seconds=next(seconds))).timestamp() * 1e9)

    with PredictionLogBuffer(make_log(art, clock), flush_interval_s=60) as buf:
        for i in range(25):
            buf.append(f"r{i:02d}", *request(10, i))
            if i % 5 == 4:
                buf.flush(timeout=5)  # files of 5 requests: 50 rows
        assert buf.files_written == 5
    # A stopped writer's last segment: the monitor publishes it before it cuts.
    orphan = PredictionLogBuffer(make_log(art, clock), flush_interval_s=3600)
    for i in range(25, 30):
        orphan.append(f"r{i:02d}", *request(10, i))
    orphan._abandon = True  # its thread stops without publishing: as if the process died
    with orphan._cond:
        orphan._cond.notify_all()
    orphan._thread.join(5)
    os.close(orphan._open.fd)
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
    assert files(art) == [] and open_segments(art) == []
