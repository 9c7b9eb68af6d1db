"""A replica's prediction log buffer: many requests per file, written by a thread of its own.

A replica logs through a `PredictionLogBuffer`: `append` queues a request's rows (no disk I/O)
and a thread of the buffer's own writes whatever is queued as one file per flush. The buffer
holds at most `max_rows` unwritten rows; past that `append` refuses (`LogBackpressure`), so a
replica answers 503 rather than drop rows or grow without bound.

Errors the buffer raises:

    PredictionLogError      base of the errors below
    ├── LogBackpressure     append refused, nothing queued: too many rows wait to be written
    ├── LogClosed           append after close
    ├── LogWriteFailed      rows could not be written (the OS error is its ``__cause__``)
    └── LogFlushTimeout     flush or close ran out of time (also a ``TimeoutError``)
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import pyarrow as pa

from appliance.errors import InvalidInput
from cluster.serve._prediction_log import PredictionLog

_log = logging.getLogger(__name__)
# The wait before a failed write is tried again when rows are written at once (no interval):
# a broken disk must not spin the thread.
_MIN_RETRY_S = 0.5


class PredictionLogError(Exception):
    """Base class for errors of the buffered prediction log."""


class LogBackpressure(PredictionLogError):
    """Too many rows wait to be written: the request was refused and nothing of it queued."""

    def __init__(self, retry_after_s: float, backlog_rows: int, max_rows: int) -> None:
        super().__init__(
            f"the prediction log has {backlog_rows} rows waiting to be written "
            f"(max_rows={max_rows}); retry in {retry_after_s:.1f} s. The disk may be slow or "
            "failing (see the buffer's write_failures and last_error)"
        )
        self.retry_after_s = retry_after_s


class LogClosed(PredictionLogError):
    """The buffer was closed: it takes no more rows."""


class LogWriteFailed(PredictionLogError):
    """Rows could not be written; `kept` says whether they stay queued for a retry."""

    def __init__(self, folder: Path, rows: int, kept: bool) -> None:
        then = "they stay queued and the write is retried" if kept else "they are lost: not logged"
        super().__init__(
            f"could not write {rows} prediction log rows into {str(folder)!r}; {then}. "
            "Check the disk's free space and the folder's permissions"
        )
        self.rows = rows
        self.kept = kept


class LogFlushTimeout(PredictionLogError, TimeoutError):
    """Queued rows were not all written in the time allowed (they stay queued)."""



@dataclasses.dataclass(eq=False)
class _Entry:
    seq: int
    batch: pa.RecordBatch
    ts_ns: int
    queued_at: float
    future: Future[Path | None] | None


class PredictionLogBuffer:
    """Queues the rows of served requests and writes them, many requests per file, from a
    thread of its own; one per model replica.

    `append` converts a request's rows to Arrow and queues them: no disk I/O on the request's
    path. The thread writes everything queued as files of at most `max_file_rows` rows (whole
    requests; a larger request gets a file of its own) once the oldest queued row has waited
    `flush_interval_s`, or as soon as `max_file_rows` rows are queued.

    Acknowledging a request: `append` returns a future that resolves to the file's path once
    that file is fsynced and renamed into place (and its folder fsynced). A replica awaits it,
    ``await asyncio.wrap_future(future)``, before it answers 200: the answer then promises the
    rows are on disk, and all the requests queued during one interval share one file and one
    fsync (group commit), at the cost of up to `flush_interval_s` of latency: a replica that
    awaits sets it to the latency it can afford (say 0.05 s; a file per interval under load).
    A replica may instead answer once `append` returns: the rows will still be written
    unless the disk stays broken until `close` gives up on them (which is loud, see `close`).

    A failed write (disk full, permissions) fails the futures of all the rows it took, with
    `LogWriteFailed` (``kept`` true; the OS error is the cause), and puts those rows back at
    the head of the queue: rows being written still count toward `max_rows`, so there is
    always room for them. The write is retried `flush_interval_s` later (or at `flush`), and
    once it succeeds the rows are in exactly one file; meanwhile new appends queue behind
    them until `max_rows` refuses more. So every future resolves, to a path or to an error,
    and a row is never dropped without an error: a replica that answered 503 after a failed
    future may still find that request's rows logged later.

    Args:
        log: turns requests into rows and writes files.
        flush_interval_s: the longest a queued row waits to be written (default 1.0 s); also
            the wait before retrying a failed write.
        max_file_rows: write as soon as this many rows are queued; the most rows in a file,
            except for one request larger than it (default 20_000).
        max_rows: the most rows appended and not yet written (default 100_000).
        retry_failed: keep the rows of a failed write queued and retry them (default True).
            A replica passes False: it answers those requests with an error, so their rows
            must never be logged later (served == logged); they are counted in `rows_failed`.
    """

    def __init__(
        self,
        log: PredictionLog,
        *,
        flush_interval_s: float = 1.0,
        max_file_rows: int = 20_000,
        max_rows: int = 100_000,
        retry_failed: bool = True,
    ) -> None:
        if not flush_interval_s >= 0 or max_file_rows < 1 or max_rows < 1:
            raise InvalidInput(
                f"prediction log buffer: flush_interval_s ({flush_interval_s!r}) must be >= 0, "
                f"max_file_rows ({max_file_rows!r}) and max_rows ({max_rows!r}) positive"
            )
        self.retry_failed = bool(retry_failed)
        self.log = log
        self.flush_interval_s = float(flush_interval_s)
        self.max_file_rows = int(max_file_rows)
        self.max_rows = int(max_rows)
        self.writer_id = uuid.uuid4().hex[:16]
        self._cond = threading.Condition()
        self._queue: deque[_Entry] = deque()
        self._inflight: deque[_Entry] = deque()  # taken by the writer, in order
        self._queued_rows = 0
        self._backlog = 0  # queued + in flight
        self._next_seq = 0
        self._file_seq = 0  # the writer thread's own
        self._passes = 0
        self._failed_pass = 0
        self._last_error: BaseException | None = None
        self._retry_at = 0.0
        self._flush_wanted = False
        self._closing = False
        self._abandon = False
        self._files_written = self._rows_written = self._rows_refused = 0
        self._write_failures = self._rows_lost = self._rows_failed = 0
        self._thread = threading.Thread(
            target=self._run, name=f"prediction-log-{self.writer_id}", daemon=True)
        self._thread.start()

    def __enter__(self) -> PredictionLogBuffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def rows_failed(self) -> int:
        """Rows whose write failed and which were dropped (retry_failed False), their
        requests having been told so through their futures."""
        return self._rows_failed

    @property
    def backlog_rows(self) -> int:
        """Rows appended and not yet written (queued or being written)."""
        return self._backlog

    @property
    def files_written(self) -> int:
        """Files published so far."""
        return self._files_written

    @property
    def rows_written(self) -> int:
        """Rows in the files published so far."""
        return self._rows_written

    @property
    def rows_refused(self) -> int:
        """Rows of requests that `append` refused with `LogBackpressure`."""
        return self._rows_refused

    @property
    def write_failures(self) -> int:
        """Writes that failed (each retried, except at `close`)."""
        return self._write_failures

    @property
    def rows_lost(self) -> int:
        """Rows that `close` gave up on (each reported by an error)."""
        return self._rows_lost

    @property
    def last_error(self) -> BaseException | None:
        """The error of the latest write if it failed, else None (a replica's health)."""
        return self._last_error

    def append(
        self,
        request_id: str,
        columns: Mapping[str, np.ndarray],
        predictions: np.ndarray,
        scores: np.ndarray,
        *,
        shadow: bool = False,
        client_id: str | None = None,
    ) -> Future[Path | None]:
        """Queue the rows of one request; return a future of the file that will hold them.

        The future resolves to the file's path once it is durably in place, or fails with
        `LogWriteFailed`; it cannot be cancelled. A request with no rows is not logged: its
        future is already resolved, to None. Arguments as for `PredictionLog.batch`.

        Raises:
            LogBackpressure: `max_rows` would be exceeded; nothing was queued.
            LogClosed: `close` was called.
            InvalidInput: the request alone has more than `max_rows` rows.
        """
        n = len(predictions)
        if n > self.max_rows:
            raise InvalidInput(
                f"request {request_id!r} has {n} rows, more than the prediction log buffer "
                f"holds (max_rows={self.max_rows}); send smaller batches"
            )
        now = self.log.clock()
        rows = self.log.batch(request_id, columns, predictions, scores, shadow=shadow,
                              client_id=client_id, now=now)
        future: Future[Path | None] = Future()
        # Running futures cannot be cancelled: a cancelled awaiter must not undo the logging.
        future.set_running_or_notify_cancel()
        if n == 0:
            future.set_result(None)
            return future
        with self._cond:
            if self._closing:
                raise LogClosed(f"the prediction log of {str(self.log.folder)!r} is closed")
            if self._backlog + n > self.max_rows:
                self._rows_refused += n
                retry = max(self.flush_interval_s, self._retry_at - time.monotonic())
                raise LogBackpressure(retry, self._backlog, self.max_rows)
            wake = not self._queue or self._queued_rows + n >= self.max_file_rows
            self._queue.append(_Entry(self._next_seq, rows, now, time.monotonic(), future))
            self._next_seq += 1
            self._queued_rows += n
            self._backlog += n
            if wake:
                self._cond.notify_all()
        return future

    def flush(self, timeout: float | None = 10.0) -> None:
        """Write every row queued now (and retry rows a failed write kept) before returning.

        Args:
            timeout: seconds to wait at most (default 10; None waits as long as it takes).

        Raises:
            LogWriteFailed: a write started by this flush failed (the rows stay queued).
            LogFlushTimeout: the rows were not all written in time (they stay queued).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            target, start, lost = self._next_seq, self._passes, self._rows_lost
            self._flush_wanted = True
            self._cond.notify_all()
            while self._oldest_unwritten() < target:
                if self._failed_pass > start:
                    rows = sum(e.batch.num_rows for e in self._queue if e.seq < target)
                    raise LogWriteFailed(self.log.folder, rows, True) from self._last_error
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise LogFlushTimeout(
                        f"the prediction log did not write its {self._backlog} queued rows "
                        f"into {str(self.log.folder)!r} within {timeout} s; the disk may be slow"
                    )
                self._cond.wait(left)
            if self._rows_lost > lost:
                raise LogWriteFailed(self.log.folder, self._rows_lost - lost, False)

    def close(self, timeout: float | None = 10.0) -> None:
        """Write everything queued, then stop the writer thread; idempotent.

        Appends are refused from the start of the call. A failed write is retried every
        `flush_interval_s` until `timeout`; then the rows still queued are given up on: their
        futures fail (``kept`` false), `rows_lost` counts them, and close raises.

        Args:
            timeout: seconds to wait at most (default 10; None waits as long as it takes).

        Raises:
            LogWriteFailed: rows were given up on.
            LogFlushTimeout: a write still in progress at `timeout` may not finish.
        """
        deadline = None if timeout is None else time.monotonic() + timeout

        def left() -> float | None:
            return None if deadline is None else max(0.0, deadline - time.monotonic())

        with self._cond:
            self._closing = True
            self._cond.notify_all()
            lost_before = self._rows_lost
            while (self._queue or self._inflight) and left() != 0:
                self._cond.wait(left())
            dropped = self._queued_rows
            if self._queue or self._inflight:
                # Whatever is being written now is lost too if that write fails.
                self._abandon = True
                self._fail(list(self._queue), kept=False)
                self._queue.clear()
                self._queued_rows = 0
                self._backlog -= dropped
                self._rows_lost += dropped
                self._cond.notify_all()
        self._thread.join(left())
        lost = self._rows_lost - lost_before
        if lost:
            raise LogWriteFailed(self.log.folder, lost, False) from self._last_error
        if self._backlog and self._thread.is_alive():
            raise LogFlushTimeout(
                f"closing the prediction log of {str(self.log.folder)!r}: {self._backlog} rows "
                f"were still being written after {timeout} s; the disk may be hung"
            )

    def _oldest_unwritten(self) -> int:
        if self._inflight:
            return self._inflight[0].seq
        return self._queue[0].seq if self._queue else self._next_seq

    def _run(self) -> None:
        while True:
            with self._cond:
                taken = self._take()
                if taken is None:
                    return
                pass_no = self._passes
            self._write(taken, pass_no)

    def _take(self) -> list[_Entry] | None:
        """Wait until a write is due and take the queue; None once closed and empty."""
        while True:
            if not self._queue:
                self._flush_wanted = False
                if self._closing:
                    return None
                self._cond.wait()
                continue
            now = time.monotonic()
            if self._flush_wanted:
                due = now
            elif self._closing or self._queued_rows >= self.max_file_rows:
                due = self._retry_at
            else:
                due = max(self._queue[0].queued_at + self.flush_interval_s, self._retry_at)
            if now >= due:
                break
            self._cond.wait(due - now)
        taken = list(self._queue)
        self._queue.clear()
        self._queued_rows = 0
        self._inflight.extend(taken)
        self._flush_wanted = False
        self._passes += 1
        return taken

    def _files(self, entries: list[_Entry]) -> list[list[_Entry]]:
        """Consecutive whole requests, at most `max_file_rows` rows per file."""
        files: list[list[_Entry]] = []
        rows = 0
        for entry in entries:
            n = entry.batch.num_rows
            if not files or rows + n > self.max_file_rows:
                files.append([])
                rows = 0
            files[-1].append(entry)
            rows += n
        return files

    def _write(self, taken: list[_Entry], pass_no: int) -> None:
        done = 0
        for group in self._files(taken):
            rows = sum(e.batch.num_rows for e in group)
            first = min(e.ts_ns for e in group)
            name = f"{first:020d}-{self.writer_id}-{self._file_seq:08d}.parquet"
            self._file_seq += 1
            try:
                path = self.log.write_batches([e.batch for e in group], name)
            except Exception as exc:  # whatever failed, the rows are kept for a retry
                self._failed(taken[done:], exc, pass_no)
                return
            with self._cond:
                for _ in group:
                    self._inflight.popleft()
                self._backlog -= rows
                self._files_written += 1
                self._rows_written += rows
                self._last_error = None
                self._cond.notify_all()
            for entry in group:
                if entry.future is not None:
                    entry.future.set_result(path)
            done += len(group)

    def _failed(self, entries: list[_Entry], exc: Exception, pass_no: int) -> None:
        rows = sum(e.batch.num_rows for e in entries)
        _log.warning("prediction log: could not write %d rows into %r: %s",
                     rows, str(self.log.folder), exc)
        with self._cond:
            self._write_failures += 1
            self._last_error = exc
            self._failed_pass = pass_no
            self._retry_at = time.monotonic() + (self.flush_interval_s or _MIN_RETRY_S)
            self._inflight.clear()
            kept = not self._abandon and self.retry_failed
            self._fail(entries, kept=kept, cause=exc)
            if kept:
                self._queue.extendleft(reversed(entries))
                self._queued_rows += rows
            elif self._abandon:
                self._backlog -= rows
                self._rows_lost += rows
            else:
                self._backlog -= rows
                self._rows_failed += rows
            self._cond.notify_all()

    def _fail(self, entries: list[_Entry], *, kept: bool,
              cause: BaseException | None = None) -> None:
        """Fail the futures of `entries` that are still pending (lock held)."""
        for entry in entries:
            if entry.future is None:
                continue
            error = LogWriteFailed(self.log.folder, entry.batch.num_rows, kept)
            error.__cause__ = cause or self._last_error
            entry.future.set_exception(error)
            entry.future = None
