"""A replica's prediction log: a journal segment per flush interval, published by a thread.

`append` writes a request's rows to the replica's open journal segment (an Arrow IPC stream,
``pending/.open-{name}.arrows``) with one ``write`` and returns: no fsync on the request's
path. From then on the rows outlive the replica's process: if it is killed, the segment is
recovered and published (`appliance.monitor.log_files.recover_segments`) by the next replica
of the deployment or by the monitor. A thread of the buffer's own publishes the segment once
its oldest row has waited `flush_interval_s` (or it holds `max_file_rows` rows): fsync, rename
to ``{name}.arrows``, fsync of the folder. Only a power cut within that interval can lose
answered rows; the page cache holds them until then.

The buffer counts rows appended and not yet published (`backlog_rows`, in the open segment or
in segments whose publishing failed); past `max_rows` `append` refuses (`LogBackpressure`),
so a replica answers 503 rather than let a failing disk's backlog grow without bound.

Errors the buffer raises:

    PredictionLogError      base of the errors below
    ├── LogBackpressure     append refused, nothing written: too many rows wait to be published
    ├── LogClosed           append after close
    ├── LogWriteFailed      rows could not be written or published (the OS error is its cause)
    └── LogFlushTimeout     flush or close ran out of time (also a ``TimeoutError``)
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import logging
import os
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from appliance.errors import InvalidInput
from appliance.monitor.log_files import OPEN_PREFIX, SEGMENT_SUFFIX, fsync_dir, write_synced
from cluster.serve._prediction_log import LoggedRequest, PredictionLog

_log = logging.getLogger(__name__)
# The wait before a failed publish is tried again: a broken disk must not spin the thread.
_MIN_RETRY_S = 0.5


class PredictionLogError(Exception):
    """Base class for errors of the buffered prediction log."""


class LogBackpressure(PredictionLogError):
    """Too many rows wait to be published: the request was refused and nothing of it written."""

    def __init__(self, retry_after_s: float, backlog_rows: int, max_rows: int) -> None:
        super().__init__(
            f"the prediction log has {backlog_rows} rows waiting to be published "
            f"(max_rows={max_rows}); retry in {retry_after_s:.1f} s. The disk may be slow or "
            "failing (see the buffer's write_failures and last_error)"
        )
        self.retry_after_s = retry_after_s


class LogClosed(PredictionLogError):
    """The buffer was closed: it takes no more rows."""


class LogWriteFailed(PredictionLogError):
    """Rows could not be written (`kept` false: they are not logged) or not yet published
    (`kept` true: they stay in the journal and are published later)."""

    def __init__(self, folder: Path, rows: int, kept: bool) -> None:
        then = ("they stay in the journal and are published later" if kept
                else "they are not logged")
        super().__init__(
            f"could not log {rows} prediction rows into {str(folder)!r}; {then}. "
            "Check the disk's free space and the folder's permissions"
        )
        self.rows = rows
        self.kept = kept


class LogFlushTimeout(PredictionLogError, TimeoutError):
    """Appended rows were not all published in the time allowed (they stay in the journal)."""


@dataclasses.dataclass(eq=False)
class _Segment:
    fd: int
    name: str  # the published name; open, it is OPEN_PREFIX + name
    opened_at: float
    size: int  # bytes of whole messages
    rows: int = 0
    broken: bool = False  # a failed write could not be cut off: take no more appends


class PredictionLogBuffer:
    """Writes the rows of served requests to a journal segment and publishes it on an
    interval; one per model replica.

    A replica calls `append` (or `append_many` for a scored batch) before it answers 200:
    when it returns the rows are logged, and the answer may go out. Appends of one process
    are serialised by a lock (one ``write`` each); publishing runs in the buffer's thread and
    never holds that lock while it waits for the disk.

    Args:
        log: turns requests into rows; its ``folder`` is where segments go.
        flush_interval_s: the longest an appended row waits to be published (default 1.0 s);
            also the wait before retrying a failed publish.
        max_file_rows: publish as soon as the open segment holds this many rows; the most
            rows in a file, except for one request larger than it (default 20_000).
        max_rows: the most rows appended and not yet published (default 100_000).
    """

    def __init__(
        self,
        log: PredictionLog,
        *,
        flush_interval_s: float = 1.0,
        max_file_rows: int = 20_000,
        max_rows: int = 100_000,
    ) -> None:
        if not flush_interval_s >= 0 or max_file_rows < 1 or max_rows < 1:
            raise InvalidInput(
                f"prediction log buffer: flush_interval_s ({flush_interval_s!r}) must be >= 0, "
                f"max_file_rows ({max_file_rows!r}) and max_rows ({max_rows!r}) positive"
            )
        self.log = log
        self.flush_interval_s = float(flush_interval_s)
        self.max_file_rows = int(max_file_rows)
        self.max_rows = int(max_rows)
        self.writer_id = uuid.uuid4().hex[:16]
        self._schema_bytes = log.schema.serialize().to_pybytes()
        self._cond = threading.Condition()
        self._open: _Segment | None = None
        self._sealed: list[_Segment] = []  # taken from appends, not yet published, in order
        self._seq = 0
        self._backlog = 0
        self._rows_in = 0  # appended, ever
        self._rows_out = 0  # published, ever
        self._failed_passes = 0
        self._last_error: BaseException | None = None
        self._retry_at = 0.0
        self._flush_wanted = False
        self._closing = False
        self._abandon = False
        self._files_written = self._rows_written = self._rows_refused = 0
        self._write_failures = 0
        self._thread = threading.Thread(
            target=self._run, name=f"prediction-log-{self.writer_id}", daemon=True)
        self._thread.start()

    def __enter__(self) -> PredictionLogBuffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def backlog_rows(self) -> int:
        """Rows appended and not yet published."""
        return self._backlog

    @property
    def files_written(self) -> int:
        """Segments published so far."""
        return self._files_written

    @property
    def rows_written(self) -> int:
        """Rows in the segments published so far."""
        return self._rows_written

    @property
    def rows_refused(self) -> int:
        """Rows of requests that `append` refused with `LogBackpressure`."""
        return self._rows_refused

    @property
    def write_failures(self) -> int:
        """Appends and publishes that failed."""
        return self._write_failures

    @property
    def last_error(self) -> BaseException | None:
        """The error of the latest write or publish if it failed, else None."""
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
    ) -> None:
        """Log the rows of one request; arguments as for `PredictionLog.batch`.

        Raises as `append_many`.
        """
        self.append_many([LoggedRequest(request_id, columns, predictions, scores,
                                        shadow=shadow, client_id=client_id)])

    def append_many(self, requests: Sequence[LoggedRequest]) -> None:
        """Log the rows of several requests, all or none, with one write; a request with no
        rows is not logged.

        Raises:
            LogBackpressure: `max_rows` would be exceeded; nothing was written.
            LogClosed: `close` was called; nothing was written.
            LogWriteFailed: the write failed (``kept`` false); nothing was logged.
            InvalidInput: one request alone has more than `max_rows` rows; nothing was written.
        """
        for r in requests:
            if len(r.predictions) > self.max_rows:
                raise InvalidInput(
                    f"request {r.request_id!r} has {len(r.predictions)} rows, more than the "
                    f"prediction log buffer holds (max_rows={self.max_rows}); send smaller "
                    "batches"
                )
        now = self.log.clock()
        requests = [r for r in requests if len(r.predictions)]
        if not requests:
            return
        rows = self.log.rows(requests, now=now)
        n = rows.num_rows
        data = rows.serialize().to_pybytes()
        with self._cond:
            if self._closing:
                raise LogClosed(f"the prediction log of {str(self.log.folder)!r} is closed")
            if self._backlog + n > self.max_rows:
                self._rows_refused += n
                retry = max(self.flush_interval_s, self._retry_at - time.monotonic())
                raise LogBackpressure(retry, self._backlog, self.max_rows)
            try:
                segment = self._segment(now, n)
                self._write(segment, data)
            except OSError as exc:
                self._write_failures += 1
                self._last_error = exc
                _log.warning("prediction log: could not write %d rows into %r: %s",
                             n, str(self.log.folder), exc)
                raise LogWriteFailed(self.log.folder, n, kept=False) from exc
            segment.rows += n
            self._backlog += n
            self._rows_in += n
            if segment.rows >= self.max_file_rows or segment.rows == n:
                # Wake the thread for a full segment, and for a new one: its interval starts.
                self._cond.notify_all()

    def _segment(self, now_ns: int, rows: int) -> _Segment:
        """The segment `rows` more rows go to: the open one, or a new one when there is none,
        it is broken, or they would take it past `max_file_rows` (lock held)."""
        current = self._open
        if current is not None and not current.broken and (
                current.rows == 0 or current.rows + rows <= self.max_file_rows):
            return current
        if current is not None:
            self._seal()
            if current.rows == 0:  # broken before it held a row
                self._sealed.append(current)
                self._open = None
            self._cond.notify_all()
        name = f"{now_ns:020d}-{self.writer_id}-{self._seq:08d}{SEGMENT_SUFFIX}"
        self.log.folder.mkdir(parents=True, exist_ok=True)
        # Made under a name recovery ignores, and renamed once locked: an unlocked open
        # segment would look like a dead writer's, and be taken from under this one.
        tmp = self.log.folder / f".tmp-{name}"
        # Read-write: the rows can be read back if the file is removed before it is published.
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            # Held until the segment is published: a free lock tells recovery its writer died.
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            segment = _Segment(fd, name, time.monotonic(), 0)
            self._write(segment, self._schema_bytes)
            os.rename(tmp, self.log.folder / f"{OPEN_PREFIX}{name}")
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        self._seq += 1
        self._open = segment
        return segment

    def _write(self, segment: _Segment, data: bytes) -> None:
        """Append whole messages, or cut the segment back to what it held (lock held)."""
        view = memoryview(data)
        try:
            while view:
                view = view[os.pwrite(segment.fd, view, segment.size + len(data) - len(view)):]
        except OSError:
            try:
                os.ftruncate(segment.fd, segment.size)
            except OSError:
                # Part of a message stays at the end: recovery would cut it, but no reader
                # could see past it, so the segment takes no more.
                segment.broken = True
            raise
        segment.size += len(data)

    def flush(self, timeout: float | None = 10.0) -> None:
        """Publish every row appended before the call, now.

        Args:
            timeout: seconds to wait at most (default 10; None waits as long as it takes).

        Raises:
            LogWriteFailed: a publish failed (``kept``: the rows stay in the journal).
            LogFlushTimeout: the rows were not all published in time (they stay in the journal).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            target, failed = self._rows_in, self._failed_passes
            self._flush_wanted = True
            self._cond.notify_all()
            while self._rows_out < target:
                if self._failed_passes > failed:
                    raise LogWriteFailed(self.log.folder, target - self._rows_out,
                                         kept=True) from self._last_error
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise LogFlushTimeout(
                        f"the prediction log did not publish its {target - self._rows_out} "
                        f"rows into {str(self.log.folder)!r} within {timeout} s; the disk may "
                        "be slow"
                    )
                self._cond.wait(left)

    def close(self, timeout: float | None = 10.0) -> None:
        """Publish everything appended, then stop the thread; idempotent.

        Appends are refused from the start of the call. A failed publish is retried every
        `flush_interval_s` until `timeout`; segments still unpublished then are left in the
        journal, unlocked, for `recover_segments` (the next replica's, or the monitor's).

        Raises:
            LogWriteFailed: segments were left in the journal (``kept``).
            LogFlushTimeout: a publish was still in progress at `timeout`.
        """
        deadline = None if timeout is None else time.monotonic() + timeout

        def left() -> float | None:
            return None if deadline is None else max(0.0, deadline - time.monotonic())

        with self._cond:
            self._closing = True
            self._cond.notify_all()
            while self._backlog and self._thread.is_alive() and left() != 0:
                self._cond.wait(left())
            # Out of time: stop retrying; what is left stays in the journal.
            self._abandon = True
            self._cond.notify_all()
        self._thread.join(left() if self._backlog == 0 else 1.0)
        if self._thread.is_alive():
            raise LogFlushTimeout(
                f"closing the prediction log of {str(self.log.folder)!r}: {self._backlog} rows "
                f"were still being published after {timeout} s; the disk may be hung"
            )
        left_open = self._backlog
        for segment in [*self._sealed, *([self._open] if self._open else [])]:
            with contextlib.suppress(OSError):
                os.close(segment.fd)  # lets go of the lock: recovery may publish it
        self._sealed, self._open = [], None
        if left_open:
            raise LogWriteFailed(self.log.folder, left_open, kept=True) from self._last_error

    # ------------------------------------------------------------------ the publishing thread

    def _run(self) -> None:
        while True:
            with self._cond:
                due = self._take()
                if due is None:
                    return
            self._publish(due)

    def _take(self) -> list[_Segment] | None:
        """Wait until a publish is due and seal the open segment; None once closed (lock
        held)."""
        while True:
            if self._abandon:
                return None
            now = time.monotonic()
            segment = self._open if self._open is not None and self._open.rows else None
            if self._closing and not (self._sealed or segment):
                return None
            urgent = self._closing or self._flush_wanted
            retry_due = self._sealed and now >= self._retry_at
            new_due = segment is not None and (
                urgent or segment.rows >= self.max_file_rows
                or now >= segment.opened_at + self.flush_interval_s)
            # A failed segment waits for its retry even when closing, so a broken disk does
            # not spin the thread; a new segment need not wait behind it.
            if retry_due or (new_due and not self._sealed) or (urgent and not self._sealed):
                break
            if new_due and self._sealed and not retry_due:
                # Seal it now so that it is published right after the one being retried.
                self._seal()
            waits = [self._retry_at - now] if self._sealed else []
            if segment is not None and self._open is segment:
                waits.append(segment.opened_at + self.flush_interval_s - now)
            self._cond.wait(max(0.0, min(waits)) if waits else None)
        self._flush_wanted = False
        self._seal()
        return list(self._sealed)

    def _seal(self) -> None:
        if self._open is not None and self._open.rows:
            self._sealed.append(self._open)
            self._open = None

    def _publish(self, segments: list[_Segment]) -> None:
        folder = self.log.folder
        for segment in segments:
            opened = folder / f"{OPEN_PREFIX}{segment.name}"
            try:
                if segment.rows == 0:
                    # Every write to it failed: nothing to publish (a reader would find no rows).
                    opened.unlink(missing_ok=True)
                else:
                    os.fsync(segment.fd)
                    try:
                        os.rename(opened, folder / segment.name)
                    except FileNotFoundError:
                        if (folder / segment.name).exists():
                            # Published already (by a recovery): retrying would stall every
                            # later segment behind this one.
                            _log.warning("prediction log: segment %r was published by another "
                                         "process", segment.name)
                        else:
                            self._rewrite(segment)
            except Exception as exc:  # whatever failed, the segment stays for a retry
                self._failed(segment, exc)
                return
            try:
                fsync_dir(folder)
            except OSError as exc:  # published already: a retry would publish it twice
                _log.warning("prediction log: could not fsync %r: %s", str(folder), exc)
            with contextlib.suppress(OSError):
                os.close(segment.fd)
            with self._cond:
                self._sealed.remove(segment)
                self._backlog -= segment.rows
                self._rows_out += segment.rows
                self._files_written += 1
                self._rows_written += segment.rows
                self._last_error = None
                self._cond.notify_all()

    def _rewrite(self, segment: _Segment) -> None:
        """Publish a segment whose open file is gone (removed by hand, say) from the rows its
        descriptor still holds: answered rows are not lost to a stray ``rm``."""
        _log.error("prediction log: open segment %r was removed; publishing its %d rows from "
                   "this replica's copy", OPEN_PREFIX + segment.name, segment.rows)
        folder = self.log.folder
        tmp = folder / f".tmp-{segment.name}"
        data = os.pread(segment.fd, segment.size, 0)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            write_synced(fd, data)
        finally:
            os.close(fd)
        os.rename(tmp, folder / segment.name)

    def _failed(self, segment: _Segment, exc: Exception) -> None:
        _log.warning("prediction log: could not publish %d rows in %r: %s; retrying",
                     segment.rows, str(self.log.folder / segment.name), exc)
        with self._cond:
            self._write_failures += 1
            self._failed_passes += 1
            self._last_error = exc
            self._retry_at = time.monotonic() + max(self.flush_interval_s, _MIN_RETRY_S)
            self._cond.notify_all()
