"""Prediction windows: cut a deployment's logged predictions into windows by its policy.

Serving publishes files of logged rows into ``predictions/{deployment}/pending`` (Arrow IPC
segments or Parquet, `appliance.monitor.log_files`). A window is a run of those files, oldest
first, that closes at whichever limit of the window policy comes first: `rows` served rows (a
shadow challenger's rows, which no client saw, do not count), or `seconds` after its first row.
A window closed by rows ends with the request that reached the limit: a replica's segment holds
every request it answered in one publish interval (`log_flush_s`), so the file that reaches
the limit is split between requests, the window takes its head and the tail goes back to
pending as a file of its own. A request is never split, and its shadow rows go with it. The
cut depends only on the files and the clock, not on how often the monitor looks or how
requests were grouped into files: a pass closes every window that is due, and a partial
window waits.

Closing window ``k`` renames its files into ``closing-{k}`` (atomic per file), compacts them into
``window-{k}.parquet`` (written under a temporary name and renamed), and the caller commits the
index row; only then is the staging folder deleted. A split writes the head into the staging
folder under the file's name, then the tail into pending, and only then removes the file; a
staged file whose name is still in pending is therefore an unfinished split, which the next
close undoes and does again. A crash at any point leaves either the pending files or a staging
folder that the next close completes (staged files first, so the same rows land in the same
window), so no logged prediction is lost or counted twice.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
from sqlmodel import Session, func, select

from appliance.artifacts import check_digest, sha256_file
from appliance.monitor import log_files
from appliance.store.models import PredictionWindow, RequestIndex


@dataclasses.dataclass(frozen=True)
class WindowPolicy:
    """When a window closes: at `rows` served rows or `seconds` after its first row."""

    rows: int | None = 2000
    seconds: float | None = 3600.0


@dataclasses.dataclass
class _Part:
    path: Path
    served: int
    first_ts: dt.datetime
    requests: frozenset[str]


class CorruptLog(Exception):
    """A pending prediction file could not be read (its path is in `path`)."""

    def __init__(self, path: Path, cause: BaseException) -> None:
        super().__init__(f"prediction log file {str(path)!r} is unreadable: {cause}")
        self.path = path


def _visible(folder: Path) -> list[Path]:
    # Writers publish by renaming from a dot-prefixed name (open segments, temporary files).
    return log_files.visible(folder)


def _shadow(table: pa.Table) -> pa.ChunkedArray | None:
    if "shadow" not in table.column_names:
        return None
    return pc.fill_null(table.column("shadow"), False)


def served_mask(table: pa.Table) -> pa.ChunkedArray | pa.Array:
    """True for rows a client was answered with (not a shadow challenger's)."""
    shadow = _shadow(table)
    return pa.array([True] * table.num_rows) if shadow is None else pc.invert(shadow)


def _read_meta(path: Path) -> pa.Table:
    """The `ts`, `request_id` (and `shadow`) columns of a log file: all a cut needs."""
    try:
        names = log_files.read_schema(path).names
        table = log_files.read_log(
            path, columns=[c for c in ("ts", "request_id", "shadow") if c in names])
    except (pa.ArrowException, OSError) as exc:
        raise CorruptLog(path, exc) from exc
    if not {"ts", "request_id"} <= set(table.column_names) or table.num_rows == 0:
        raise CorruptLog(path, ValueError("no rows with 'ts' and 'request_id' columns"))
    return table


def _served_count(table: pa.Table) -> int:
    shadow = _shadow(table)
    return table.num_rows - (int(pc.sum(shadow).as_py() or 0) if shadow is not None else 0)


def _part_of(path: Path, table: pa.Table) -> _Part:
    return _Part(path, _served_count(table), pc.min(table.column("ts")).as_py(),
                 frozenset(pc.unique(table.column("request_id")).to_pylist()))


def _part(path: Path) -> _Part:
    return _part_of(path, _read_meta(path))


@dataclasses.dataclass(frozen=True)
class _Cut:
    count: int  # how many of the parts form the next window
    closed_by: str  # "rows" or "seconds"
    last: int | None = None  # closed by rows: the part whose rows reached the limit
    need: int = 0  # ... and how many of its served rows the window needs


def _cut(parts: list[_Part], policy: WindowPolicy, now: dt.datetime) -> _Cut | None:
    """Which of `parts` form the next window, or None if it is not due."""
    if not parts:
        return None
    start = parts[0].first_ts
    end = start + dt.timedelta(seconds=policy.seconds) if policy.seconds is not None else None
    served = 0
    for i, part in enumerate(parts):
        if end is not None and i > 0 and part.first_ts >= end:
            return _Cut(_together(parts, i), "seconds")
        if policy.rows is not None and served + part.served >= policy.rows:
            return _Cut(_together(parts, i + 1), "rows", last=i, need=policy.rows - served)
        served += part.served
    if end is not None and now >= end:
        return _Cut(len(parts), "seconds")
    return None


def _order(part: _Part) -> tuple[dt.datetime, str]:
    return part.first_ts, part.path.name


def _together(parts: list[_Part], count: int) -> int:
    """Extend a cut over the shadow-only files that follow it for requests it already holds:
    a shadow challenger logs a moment after the answer, and a request belongs in one window."""
    held = set().union(*(p.requests for p in parts[:count]))
    while count < len(parts) and parts[count].served == 0 and parts[count].requests <= held:
        count += 1
    return count


def _read_whole(path: Path) -> pa.Table:
    try:
        return log_files.read_log(path)
    except (pa.ArrowException, OSError) as exc:
        raise CorruptLog(path, exc) from exc


def _compact(paths: list[Path]) -> pa.Table:
    """One table of the files' rows. Versions may log a feature with different types (a
    feature that became categorical, say): such columns are kept as text, which each
    version's own reading of its rows turns back into what it expects."""
    tables = [_read_whole(p) for p in paths]
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowTypeError, pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    types: dict[str, set[pa.DataType]] = {}
    for t in tables:
        for field in t.schema:
            types.setdefault(field.name, set()).add(field.type)
    clash = {name for name, kinds in types.items() if len(kinds) > 1}
    unified = []
    for t in tables:
        for name in clash & set(t.column_names):
            i = t.schema.get_field_index(name)
            t = t.set_column(i, name, t.column(name).cast(pa.string()))
        unified.append(t)
    return pa.concat_tables(unified, promote_options="permissive")


def _head_requests(table: pa.Table, need: int, held: set[str]) -> set[str] | None:
    """The requests of a log file's rows (`table`) that a window needing `need` more served
    rows takes, or None when it takes them all: requests in the order they were logged, up to
    the one that reaches `need`, and the shadow rows of requests the window holds (`held`)."""
    ids = table.column("request_id").to_numpy(zero_copy_only=False)
    served = np.asarray(served_mask(table), dtype=bool)
    names, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    counts = np.bincount(inverse.ravel(), weights=served, minlength=len(names))
    order = np.argsort(first, kind="stable")
    reached = int(np.searchsorted(np.cumsum(counts[order]), need))
    if reached >= len(names) - 1:
        return None
    head = {str(n) for n in names[order[: reached + 1]]}
    head |= {str(n) for n, c in zip(names, counts, strict=True) if c == 0 and n in held}
    return head if len(head) < len(names) else None


def _origin(path: Path) -> tuple[str, int]:
    """(stem of the published file a log file was split from, rows split off it before)."""
    stem, _, before = path.stem.rpartition("~")
    return (stem, int(before)) if stem and before.isdigit() else (path.stem, 0)


def _tail_name(name: str, head_rows: int) -> str:
    """The name of the tail of a split file: ``{stem}~{rows before it}{suffix}``, the count
    taken over every split of the same published file, so names stay unique and short."""
    stem, before = _origin(Path(name))
    return f"{stem}~{before + head_rows:010d}{Path(name).suffix}"


def _write_log_file(table: pa.Table, final: Path, *, tmp_prefix: str = ".split-",
                    compression: str = "snappy") -> None:
    """Write `table` as a file of `final`'s kind (Arrow IPC stream or Parquet) under a
    temporary name, fsync it, rename it into place and fsync the folder."""
    tmp = final.with_name(f"{tmp_prefix}{final.name}")
    if final.suffix == log_files.SEGMENT_SUFFIX:
        with pa.OSFile(str(tmp), "wb") as sink, ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
    else:
        pq.write_table(table, tmp, compression=compression)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, final)
    log_files.fsync_dir(final.parent)


_SPLIT_TMP = ".split-"


def _split(part: _Part, table: pa.Table, head_ids: set[str], staging: Path
           ) -> tuple[_Part, _Part]:
    """Split pending file `part` (its rows: `table`) into its `head_ids` requests, written into
    `staging` under its name, and the rest, written into pending as its tail; remove it.
    Returns (head, tail)."""
    mask = pc.is_in(table.column("request_id"), value_set=pa.array(sorted(head_ids), pa.string()))
    head, tail = table.filter(mask), table.filter(pc.invert(mask))
    head_path = staging / part.path.name
    tail_path = part.path.with_name(_tail_name(part.path.name, head.num_rows))
    _write_log_file(head, head_path)
    _write_log_file(tail, tail_path)
    os.unlink(part.path)
    log_files.fsync_dir(part.path.parent)
    return _part_of(head_path, head), _part_of(tail_path, tail)


def _unfinished_splits(staging: Path, pending: Path) -> list[Path]:
    """What splits that did not finish wrote: their heads (staged files whose names are still
    in pending) and their tails (files named as that file's tails, in pending)."""
    found = []
    for head in _visible(staging):
        if not (pending / head.name).exists():
            continue
        stem, before = _origin(head)
        found += [tail for tail in pending.glob(f"{stem}~*{head.suffix}")
                  if _origin(tail)[0] == stem and _origin(tail)[1] > before]
        found.append(head)  # last: while it is there, the split is known to be unfinished
    return found


def _undo_unfinished_splits(staging: Path, pending: Path) -> None:
    """Remove what splits that did not finish wrote; the files they split are whole, and are
    split again."""
    for folder in (staging, pending):
        for tmp in folder.glob(f"{_SPLIT_TMP}*") if folder.is_dir() else []:
            tmp.unlink(missing_ok=True)
    for path in _unfinished_splits(staging, pending):
        path.unlink()


def _next_index(session: Session, deployment: str) -> int:
    last = session.exec(
        select(func.max(PredictionWindow.index)).where(PredictionWindow.deployment == deployment)
    ).one()
    return (last or 0) + 1


def close_next(
    session: Session, predictions_root: Path, deployment: str, policy: WindowPolicy,
    now: dt.datetime, seen: dict[str, _Part] | None = None,
) -> tuple[PredictionWindow, pa.Table] | None:
    """Close the next window of `deployment` if the policy says it is due.

    Returns its index row (flushed, not committed; request ids indexed) and its rows, or None
    when no window is due. The caller commits, then calls `finish_close`.

    Args:
        session: open session; the caller commits.
        predictions_root: ``{artifacts}/predictions``.
        deployment: the deployment's name.
        policy: the window policy.
        now: the current time (aware UTC), for the time limit.
        seen: what earlier calls of the same pass read of each file, by name (default none):
            a pass that catches up on many windows then reads each pending file's times once,
            not once per window.

    Raises:
        CorruptLog: a pending file cannot be read (the caller may `quarantine` it).
    """
    base = Path(predictions_root) / deployment
    index = _next_index(session, deployment)
    staging = base / f"closing-{index:06d}"
    # A staging folder for an index that is already committed is leftover cleanup.
    for old in sorted(base.glob("closing-*")) if base.is_dir() else []:
        if int(old.name.split("-")[1]) < index:
            shutil.rmtree(old, ignore_errors=True)
    seen = {} if seen is None else seen

    def part(path: Path) -> _Part:
        # Names are unique (time and request id), and a file only moves pending -> staging.
        known = seen.get(path.name)
        if known is None:
            known = seen[path.name] = _part(path)
        return dataclasses.replace(known, path=path)

    # Segments a stopped replica left open hold answered rows: publish them first.
    log_files.recover_segments(base / "pending")
    _undo_unfinished_splits(staging, base / "pending")
    staged = sorted((part(p) for p in _visible(staging)), key=_order)
    pending = sorted((part(p) for p in _visible(base / "pending")), key=_order)
    parts = staged + pending
    cut = _cut(parts, policy, now)
    if cut is None:
        return None
    chosen, closed_by = parts[: cut.count], cut.closed_by
    if len(chosen) < len(staged):
        # Staged files are a window already decided (a crash after the renames): keep them.
        chosen, closed_by = staged, "rows" if policy.rows else "seconds"
    staging.mkdir(parents=True, exist_ok=True)
    if cut.last is not None and cut.last >= len(staged):
        before = parts[: cut.last]
        held = set().union(*(p.requests for p in before))
        # Read whole once: the split needs every column, and a segment is read whole anyway.
        rows = _read_whole(parts[cut.last].path)
        head_ids = _head_requests(rows, cut.need, held)
        if head_ids is not None:
            # The file that reached the limit holds requests of the next window.
            head, tail = _split(parts[cut.last], rows, head_ids, staging)
            seen.pop(parts[cut.last].path.name, None)
            seen[tail.path.name] = tail
            rest = sorted([*parts[cut.last + 1:], tail], key=_order)
            parts = [*before, head, *rest]
            chosen = parts[: _together(parts, len(before) + 1)]
    for part in chosen:
        if part.path.parent != staging:
            os.replace(part.path, staging / part.path.name)
    table = _compact([staging / p.path.name for p in chosen])
    if "shadow" not in table.column_names:
        table = table.append_column("shadow", pa.array([False] * table.num_rows))
    else:
        table = table.set_column(table.schema.get_field_index("shadow"), "shadow",
                                 _shadow(table))
    final = base / f"window-{index:06d}.parquet"
    _write_log_file(table, final, tmp_prefix=".tmp-", compression="zstd")
    return _index_window(session, deployment, index, final, table, closed_by), table


def _index_window(
    session: Session, deployment: str, index: int, path: Path, table: pa.Table, closed_by: str
) -> PredictionWindow:
    served = table.filter(served_mask(table))
    ts = table.column("ts")
    window = PredictionWindow(
        deployment=deployment,
        index=index,
        path=str(path),
        # The file is in place (renamed) before it is indexed; reads check it against this.
        sha256=sha256_file(path),
        rows=served.num_rows,
        shadow_rows=table.num_rows - served.num_rows,
        requests=len(pc.unique(table.column("request_id"))),
        versions=sorted({str(v) for v in pc.unique(table.column("version")).to_pylist()}),
        first_ts=pc.min(ts).as_py(),
        last_ts=pc.max(ts).as_py(),
        closed_by=closed_by,
    )
    session.add(window)
    session.flush()
    for request_id in pc.unique(table.column("request_id")).to_pylist():
        session.add(RequestIndex(deployment=deployment, request_id=request_id,
                                 window_id=window.id))
    session.flush()
    return window


def finish_close(predictions_root: Path, deployment: str, index: int) -> None:
    """Remove the staging folder of a committed window."""
    shutil.rmtree(Path(predictions_root) / deployment / f"closing-{index:06d}", ignore_errors=True)


def quarantine(path: Path, predictions_root: Path, deployment: str) -> Path:
    """Move an unreadable log file aside (``predictions/{deployment}/corrupt``), so one bad
    file cannot stop every later window; returns where it went."""
    folder = Path(predictions_root) / deployment / "corrupt"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / Path(path).name
    os.replace(path, target)
    return target


def pending_rows(session: Session, predictions_root: Path, deployment: str) -> int:
    """Served rows logged for `deployment` that no window holds yet (pending or closing)."""
    base = Path(predictions_root) / deployment
    files: list[Path] = _visible(base / "pending")
    nxt = _next_index(session, deployment)
    for staging in sorted(base.glob("closing-*")) if base.is_dir() else []:
        # Folders of committed windows are leftovers whose rows a window already holds.
        if int(staging.name.split("-")[1]) >= nxt:
            # An unfinished split's rows are all still in the file it was splitting.
            undone = set(_unfinished_splits(staging, base / "pending"))
            files = [p for p in [*files, *_visible(staging)] if p not in undone]
    return sum(_served_count(_read_meta(p)) for p in files)


def read_window(window: PredictionWindow, columns: list[str] | None = None) -> pa.Table:
    """The rows of a closed window (optionally only `columns`), its file re-hashed first.

    Raises:
        ArtifactIntegrityError: the file no longer hashes to the digest recorded at closing.
    """
    if window.sha256 is None:
        # Closed before digests were recorded: nothing to check against.
        return pq.read_table(window.path, columns=columns)
    with pa.memory_map(str(window.path)) as source:
        # The mapped bytes are the ones checked and then parsed.
        buffer = source.read_buffer()
    check_digest(buffer, window.sha256, f"prediction window {window.deployment}#{window.index}",
                 path=Path(window.path))
    return pq.read_table(pa.BufferReader(buffer), columns=columns)
