"""Named, expiring locks in the metadata store, so that two monitor processes never work on the
same deployment or retrain request at once, on one host or several.

A lease row names its holder (host, pid and the process's start time) and an expiry. It can be
taken when it is free, expired, already ours, or held by a process of this host that no longer
exists: a monitor killed with SIGKILL gives its leases up at once to its successor on the same
host, and after `ttl` to one on another host. Long work keeps its lease with `hold`, which
renews it in the background.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import socket
import threading
from collections.abc import Callable, Iterator

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, delete, select

from appliance.store.database import session_scope
from appliance.store.models import Lease, utcnow


def _start_ticks(pid: int) -> str:
    """The process's start time in clock ticks since boot ("?" where /proc is absent)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            # Field 22; the command name (field 2) may hold spaces, so split after its ")".
            return fh.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "?"


def holder_id() -> str:
    """This process as a lease holder: ``host:pid:start``, unique even when pids are reused."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_start_ticks(pid)}"


def _dead_here(holder: str) -> bool:
    """True when `holder` was a process of this host that has ended."""
    host, _, rest = holder.partition(":")
    pid_text, _, start = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    # Alive, but a reused pid is another process.
    return start not in ("", "?") and _start_ticks(pid) not in (start, "?")


def try_acquire(
    session: Session, name: str, holder: str, *, ttl_s: float, now: dt.datetime | None = None
) -> bool:
    """Take or renew lease `name` for `holder` within the caller's transaction.

    Args:
        session: an open session; the caller commits.
        name: what the lease guards, e.g. ``monitor:credit``.
        holder: who takes it (`holder_id()`).
        ttl_s: seconds until it expires unless renewed.
        now: the current time (default `utcnow()`).
    """
    now = now or utcnow()
    expires = now + dt.timedelta(seconds=ttl_s)
    # FOR UPDATE serialises competing takers on PostgreSQL; SQLite's transactions already
    # begin IMMEDIATE, one writer at a time.
    row = session.exec(select(Lease).where(Lease.name == name).with_for_update()).first()
    if row is None:
        try:
            with session.begin_nested():
                session.add(Lease(name=name, holder=holder, expires_at=expires, acquired_at=now))
        except IntegrityError:
            return False
        return True
    if row.holder != holder and row.expires_at > now and not _dead_here(row.holder):
        return False
    if row.holder != holder:
        row.acquired_at = now
    row.holder, row.expires_at = holder, expires
    session.add(row)
    return True


def release(session: Session, name: str, holder: str) -> None:
    """Give lease `name` up if `holder` has it."""
    session.exec(delete(Lease).where(Lease.name == name, Lease.holder == holder))


@contextlib.contextmanager
def hold(
    db_url: str, name: str, *, holder: str | None = None, ttl_s: float = 60.0,
    clock: Callable[[], dt.datetime] = utcnow,
) -> Iterator[bool]:
    """Yield whether lease `name` was taken; while held, renew it every `ttl_s` / 3.

    Args:
        db_url: the metadata store.
        name: what the lease guards.
        holder: who takes it (default `holder_id()`).
        ttl_s: lease lifetime without renewal (default 60 s).
        clock: the current time (default `utcnow`).
    """
    holder = holder or holder_id()
    with session_scope(db_url) as session:
        got = try_acquire(session, name, holder, ttl_s=ttl_s, now=clock())
    if not got:
        yield False
        return
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(ttl_s / 3):
            try:
                with session_scope(db_url) as session:
                    try_acquire(session, name, holder, ttl_s=ttl_s, now=clock())
            except Exception:  # noqa: BLE001 - a missed renewal is retried; the work goes on
                continue

    thread = threading.Thread(target=renew, name=f"lease-{name}", daemon=True)
    thread.start()
    try:
        yield True
    finally:
        stop.set()
        thread.join()
        with session_scope(db_url) as session:
            release(session, name, holder)
