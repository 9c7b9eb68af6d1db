"""Prediction log files as serving writes them and the monitor reads them (Ray-free).

A ``predictions/{deployment}/pending`` folder holds two kinds of published files:

    {first_ts_ns:020d}-{writer_id}-{seq:08d}.arrows   a replica's journal segment: an Arrow IPC
                                                      stream, many requests (the hot path)
    {time_ns:020d}-{request_id}.parquet               one request (`PredictionLog.write`:
                                                      tools and tests)

A replica appends each answered request's rows to its open segment, ``.open-{name}``, with
one ``write`` before it answers: once that returns the rows outlive the replica's process (a
kill, a crash), since they are in the operating system's page cache. A thread of the replica
then publishes the segment (fsync, rename to ``{name}``, fsync of the folder), as soon as its
previous publish is done or on the replica's interval: from then on the rows also survive a
power cut, and the monitor sees them. Readers skip dot files, so they never see an open
segment.

A writer makes its segment under a ``.tmp-`` name, takes an exclusive ``flock`` on it, and only
then renames it ``.open-{name}``; it holds the lock until the segment is published. A segment
whose lock is free was left by a dead writer: `recover_segments` publishes it, cut at its last
complete message (a write torn by the kill belongs to a request that was never answered), so a
row is in exactly one file, open or published, and never in two. On a cluster the artifact root
must therefore honour ``flock`` between the nodes that share it (one host's disk, or NFSv4, do).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

_log = logging.getLogger(__name__)

SEGMENT_SUFFIX = ".arrows"
SUFFIXES = (".parquet", SEGMENT_SUFFIX)
OPEN_PREFIX = ".open-"


def visible(folder: Path) -> list[Path]:
    """The published log files in `folder`, by name (skips dot files: open segments and
    files still being written)."""
    if not Path(folder).is_dir():
        return []
    return sorted(p for p in Path(folder).iterdir()
                  if p.suffix in SUFFIXES and not p.name.startswith(".") and p.is_file())


def read_schema(path: Path) -> pa.Schema:
    """The schema of a published log file."""
    if Path(path).suffix == SEGMENT_SUFFIX:
        with pa.memory_map(str(path)) as source:
            return ipc.open_stream(source).schema
    return pq.read_schema(path)


def read_log(path: Path, columns: list[str] | None = None) -> pa.Table:
    """The rows of a published log file (optionally only `columns`).

    Raises:
        pa.ArrowException, OSError: the file is not a whole log file.
    """
    if Path(path).suffix != SEGMENT_SUFFIX:
        return pq.read_table(path, columns=columns)
    with pa.memory_map(str(path)) as source:
        table = ipc.open_stream(source).read_all()
    return table.select(columns) if columns is not None else table


def write_synced(fd: int, data: bytes | memoryview) -> None:
    """Write all of `data` at `fd`'s position (``write`` may take less than asked), then
    fsync: once this returns the bytes survive a power cut."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.fsync(fd)


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable; a file system that cannot sync a folder is let be."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        # The file is already published: failing now would make the caller write its rows
        # again. Some file systems cannot sync a folder at all (EINVAL).
        if exc.errno != errno.EINVAL:
            _log.warning("could not fsync folder %r after a rename: %s", str(folder), exc)
    finally:
        os.close(fd)


def complete_prefix(data: bytes | memoryview) -> tuple[int, int]:
    """(bytes, record batches) of the longest run of whole messages at the start of an
    Arrow IPC stream: (0, 0) when not even its schema is whole."""
    source = pa.BufferReader(pa.py_buffer(data))
    reader = ipc.MessageReader.open_stream(source)
    end = batches = 0
    while True:
        try:
            message = reader.read_next_message()
        except StopIteration:
            return end, batches
        except (pa.ArrowException, OSError):
            return end, batches  # a torn message: the writer died during its write
        if end == 0 and message.type != "schema":
            return 0, 0
        batches += message.type == "record batch"
        end = source.tell()


def recover_segments(folder: Path) -> list[Path]:
    """Publish the open segments in `folder` that no live writer holds; return their paths.

    Safe to run at any time, by any number of processes: a segment whose writer lives is
    locked and left alone, and of two recoverers only one finds the segment still there.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    published = []
    for path in sorted(folder.glob(f"{OPEN_PREFIX}*{SEGMENT_SUFFIX}")):
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            continue  # published or recovered meanwhile
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its writer is alive
            try:
                if os.stat(path).st_ino != os.fstat(fd).st_ino:
                    continue
            except FileNotFoundError:
                continue  # its writer published it just before letting go
            size = os.fstat(fd).st_size
            end, batches = complete_prefix(os.pread(fd, size, 0)) if size else (0, 0)
            if batches == 0:
                os.unlink(path)
                continue
            if end < size:
                os.ftruncate(fd, end)
            os.fsync(fd)
            final = folder / path.name[len(OPEN_PREFIX):]
            os.rename(path, final)
            fsync_dir(folder)
            _log.warning("published segment %r (%d requests) left open by a stopped writer",
                         final.name, batches)
            published.append(final)
        finally:
            with contextlib.suppress(OSError):
                os.close(fd)
    return published
