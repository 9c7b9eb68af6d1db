"""The tamper-evident audit log: an HMAC chain in the database, checkpoints outside it.

Each event stores the hash of the previous event and its own HMAC-SHA256 over (sequence number,
time, actor, action, object, details, previous hash, key fingerprint), under a key that lives
outside the database (`audit_key`). After every commit that appended events, a signed
checkpoint of the committed head (count and head hash) goes to a sink outside the database
(`audit_checkpoints`). `verify` then catches, and names the first bad event of:

- a row edited, inserted, deleted or reordered (its HMAC or its link to the previous one fails);
- the last rows deleted, or the table swapped for an older copy (shorter than, or another head
  than, the latest valid checkpoint);
- the whole chain recomputed without the key (HMACs fail; unkeyed rows are refused);
- a forged or garbled checkpoint line.

When checkpoints are taken: in an SQLAlchemy ``after_commit`` hook of the session that appended,
from the head as committed, read on a fresh connection. So an event is never checkpointed before
its transaction commits (a rolled-back event would otherwise look deleted), and under concurrent
writers every checkpoint names a committed state; lines may land out of order, so `verify` uses
the valid checkpoint with the most events. A checkpoint that cannot be written is logged as a
warning and the action stands; `health` reports a missing checkpoint.

Events written before the chain was keyed carry ``key_id`` NULL and plain sha256 hashes. They
verify only once `anchor` has explicitly accepted them: it checks their sha256 chain and writes
a signed anchor (their count and head) to the sink, once, and only for unkeyed events older
than the first checkpoint, so a chain later rewritten without the key cannot be re-anchored.

Appends are serialised (an advisory lock on PostgreSQL, IMMEDIATE transactions on SQLite), and
`prev_hash` is unique as a backstop: two writers that read the same head can never both append.

Key and sink come from `configure(cfg)` or, when nothing was configured, from the configuration
that the environment names (`appliance.config.load_config`), so the many callers of `record`
need no configuration argument.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import event as sa_event
from sqlalchemy import orm, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel, select

from appliance.errors import CheckFailed, ConflictError, InvalidInput
from appliance.governance import audit_checkpoints as sink
from appliance.governance.audit_key import AuditKey, load_key
from appliance.governance.operations import operation
from appliance.store.models import AuditEvent, utcnow

if TYPE_CHECKING:
    from appliance.config import Config
    from appliance.store.models import User

log = logging.getLogger(__name__)

GENESIS = "0" * 64
_RETRIES = 5
# Key of the PostgreSQL advisory lock that serialises appends (any constant; "AUDT").
_PG_LOCK_KEY = 0x41554454
# session.info key: this session appended events; checkpoint its head once it commits.
_PENDING = "appliance.audit.pending_checkpoint"
_ENV = ("APPLIANCE_HOME", "APPLIANCE_CONFIG", "APPLIANCE_AUDIT_KEY_FILE",
        "APPLIANCE_AUDIT_CHECKPOINTS")


@dataclasses.dataclass(frozen=True)
class AuditSetup:
    """Where the key and the checkpoints live.

    Args:
        key_file: the HMAC key (mode 0600).
        checkpoints: the append-only JSONL sink that `verify` reads.
        syslog: also send each checkpoint to syslog.
        webhook: also POST each checkpoint to this URL.
    """

    key_file: Path
    checkpoints: Path
    syslog: bool = False
    webhook: str | None = None

    @classmethod
    def from_config(cls, cfg: Config) -> AuditSetup:
        return cls(key_file=cfg.audit_key_file or cfg.home / "audit.key",
                   checkpoints=cfg.audit_checkpoints or cfg.home / "audit-checkpoints.jsonl",
                   syslog=cfg.audit_syslog, webhook=cfg.audit_webhook)


_configured: AuditSetup | None = None
_from_env: dict[tuple[str | None, ...], AuditSetup] = {}


def configure(cfg: Config | None) -> None:
    """Use `cfg`'s audit key and sink in this process (None: resolve from the environment)."""
    global _configured
    _configured = AuditSetup.from_config(cfg) if cfg is not None else None


@contextlib.contextmanager
def configured(cfg: Config) -> Iterator[None]:
    """`configure(cfg)` for the duration of a block, then back to what was configured before:
    for a process that runs an appliance whose home is not the environment's (the demo)."""
    global _configured
    previous = _configured
    configure(cfg)
    try:
        yield
    finally:
        _configured = previous


def _setup(cfg: Config | None = None) -> AuditSetup:
    if cfg is not None:
        return AuditSetup.from_config(cfg)
    if _configured is not None:
        return _configured
    env = tuple(os.environ.get(name) for name in _ENV)
    if env not in _from_env:
        # Deferred: appliance.config imports the monitor, whose modules record audit events.
        from appliance.config import load_config

        _from_env[env] = AuditSetup.from_config(load_config())
    return _from_env[env]


def _serialise_appends(session: Session) -> None:
    # PostgreSQL: hold a transaction-scoped lock so concurrent appenders queue instead of
    # racing for the head. SQLite needs nothing here: its transactions begin IMMEDIATE
    # (see appliance.store.database), which already admits one writer at a time.
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})


def _canonical(event: AuditEvent) -> bytes:
    body = {
        "id": event.id,
        # Aware UTC both when written and when read back (UTCDateTime), so the text is stable.
        "ts": event.ts.astimezone(dt.timezone.utc).isoformat(),
        "actor": event.actor,
        "action": event.action,
        "object_type": event.object_type,
        "object_id": event.object_id,
        "details": event.details,
        "prev_hash": event.prev_hash,
    }
    if event.key_id is not None:
        # Unkeyed events keep the body they were hashed with before the chain was keyed.
        body["key_id"] = event.key_id
    return json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()


def _digest(event: AuditEvent, key: AuditKey | None) -> str:
    """The event's hash: HMAC under `key` when it is keyed, plain sha256 when it is not."""
    if event.key_id is None:
        return hashlib.sha256(_canonical(event)).hexdigest()
    if key is None:
        raise ValueError("a keyed event needs the key")
    return key.sign(_canonical(event))


def _head(session: Session) -> tuple[int, str]:
    last = session.exec(select(AuditEvent).order_by(AuditEvent.id.desc()).limit(1)).first()
    return (0, GENESIS) if last is None else (last.id, last.hash)


def record(
    session: Session,
    actor: str,
    action: str,
    object_type: str,
    object_id: str | int,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event in its own savepoint and return it.

    The event is signed with the audit key (created on first use); once the caller's
    transaction commits, the committed head is checkpointed.

    Args:
        session: an open session; the event commits with the caller's transaction.
        actor: user or service-token name performing the action.
        action: dotted verb, e.g. ``model.promote.approved``.
        object_type: what was acted on (``model``, ``dataset``...).
        object_id: its identifier.
        details: small JSON-able context (default none).

    Raises:
        InvalidInput: the key file is not private (mode 0600) or cannot be created.
    """
    setup = _setup()
    key = load_key(setup.key_file, create=True)
    _serialise_appends(session)
    for attempt in range(_RETRIES):
        last_id, prev = _head(session)
        event = AuditEvent(
            id=last_id + 1,
            ts=utcnow(),
            actor=actor,
            action=action,
            object_type=object_type,
            object_id=str(object_id),
            details=json.loads(json.dumps(details or {}, default=str)),
            prev_hash=prev,
            hash="",
            key_id=key.key_id,
        )
        event.hash = _digest(event, key)
        try:
            with session.begin_nested():
                session.add(event)
                session.flush()
            session.info[_PENDING] = setup
            return event
        except IntegrityError:
            if attempt == _RETRIES - 1:
                raise
    raise AssertionError("unreachable")


def _committed_head(engine: Engine) -> tuple[int, str]:
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT id, hash FROM auditevent ORDER BY id DESC LIMIT 1")).first()
    return (0, GENESIS) if row is None else (int(row[0]), str(row[1]))


def checkpoint(engine: Engine, cfg: Config | None = None) -> sink.Checkpoint | None:
    """Write a checkpoint of the committed head of `engine`'s chain (None: the chain is empty).

    Called after every commit that appended events; call it yourself only outside a
    transaction that holds uncommitted events.

    Raises:
        InvalidInput: the key file is not private.
        OSError: the file sink cannot be written.
    """
    return _checkpoint_with(engine, _setup(cfg))


def _checkpoint_with(engine: Engine, setup: AuditSetup) -> sink.Checkpoint | None:
    key = load_key(setup.key_file, create=True)
    count, head = _committed_head(engine)
    if count == 0:
        return None
    cp = sink.make(key, sink.CHECKPOINT, sink.database_identity(engine.url), count, head)
    sink.append(setup.checkpoints, cp)
    sink.publish(cp, syslog=setup.syslog, webhook=setup.webhook)
    return cp


@sa_event.listens_for(orm.Session, "after_commit")
def _checkpoint_after_commit(session: orm.Session) -> None:
    # after_commit also fires when a savepoint is released; only the outermost commit counts.
    if session.in_nested_transaction():
        return
    setup = session.info.pop(_PENDING, None)
    if setup is None:
        return
    try:
        # The session cannot run SQL inside this hook; the head is read on a connection of
        # its own, and is committed by now.
        _checkpoint_with(session.get_bind(), setup)
    except Exception as exc:  # noqa: BLE001 - the commit stands; health() reports the gap
        log.warning("audit checkpoint not written: %s", exc)


@sa_event.listens_for(orm.Session, "after_transaction_end")
def _forget_on_rollback(session: orm.Session, transaction: orm.SessionTransaction) -> None:
    # after_commit has already taken the mark of a committed transaction; what is left when
    # the outermost transaction ends was rolled back.
    if transaction.parent is None:
        session.info.pop(_PENDING, None)


class VerifyResult(SQLModel):
    """Outcome of `verify` and `health`.

    Args:
        ok: the chain is intact and agrees with its checkpoints (and, for `health`, has one).
        events: how many events were read.
        head: hash of the last good event.
        broken_at: id of the first bad event (None when the fault is not one event's).
        reason: what is wrong, for people.
        key_id: fingerprint of the configured audit key (None: no key yet).
        checkpoint_events: event count of the latest valid checkpoint (None: none).
        checkpoint_at: when that checkpoint was taken.
        findings: everything found wrong or worth knowing, most serious first.
    """

    ok: bool
    events: int
    head: str
    broken_at: int | None = None
    reason: str | None = None
    key_id: str | None = None
    checkpoint_events: int | None = None
    checkpoint_at: str | None = None
    findings: list[str] = Field(default_factory=list)


def verify(session: Session, cfg: Config | None = None) -> VerifyResult:
    """Walk the chain from the first event, then hold it against the latest checkpoint.

    Args:
        session: an open session on the store.
        cfg: whose key and sink to use (default: `configure`'s, or the environment's).

    Raises:
        InvalidInput: the key file exists but is not private or is unreadable.
    """
    setup = _setup(cfg)
    key = load_key(setup.key_file, create=False)
    db = sink.database_identity(session.get_bind().url)
    found = sink.read(setup.checkpoints, key, db)
    anchor = max(found.anchors, key=lambda a: a.events, default=None)
    latest = found.latest
    pinned = [cp for cp in (anchor, latest) if cp is not None]
    result = VerifyResult(ok=True, events=0, head=GENESIS, key_id=key.key_id if key else None,
                          checkpoint_events=latest.events if latest else None,
                          checkpoint_at=latest.ts if latest else None)

    def broken(event_id: int | None, reason: str) -> VerifyResult:
        result.ok, result.broken_at, result.reason = False, event_id, reason
        result.findings.insert(0, f"event {event_id}: {reason}" if event_id else reason)
        return result

    result.findings.extend(found.problems)
    prev, expected = GENESIS, 1
    query = select(AuditEvent).order_by(AuditEvent.id).execution_options(yield_per=1000)
    for event in session.exec(query):
        result.events += 1
        if event.id != expected:
            return broken(event.id, f"event {expected} is missing (deleted, or ids rewritten)")
        if event.prev_hash != prev:
            return broken(event.id, "previous-hash link broken (a row was removed, inserted "
                                    "or reordered before it)")
        if event.key_id is None:
            if anchor is None or event.id > anchor.events:
                return broken(event.id, "written without the audit key (plain sha256) and no "
                                        "anchor covers it: rewritten without the key, or older "
                                        "than the keyed chain (then: `appliance audit anchor`)")
            if _digest(event, None) != event.hash:
                return broken(event.id, "content does not match its hash")
        elif key is None:
            return broken(event.id, f"signed with key {event.key_id}, but the audit key file "
                                    f"{str(setup.key_file)!r} does not exist")
        elif event.key_id != key.key_id:
            return broken(event.id, f"signed with key {event.key_id}, not with the configured "
                                    f"key {key.key_id} ({str(setup.key_file)!r})")
        elif _digest(event, key) != event.hash:
            return broken(event.id, "content does not match its hash (HMAC): edited, or "
                                    "rewritten without the key")
        for cp in pinned:
            if cp.events == event.id and cp.head_hash != event.hash:
                return broken(event.id, f"differs from the {cp.kind} of {cp.ts} (the chain "
                                        f"was rewritten from here or before)")
        prev, expected = event.hash, expected + 1
        result.head = prev
    for cp in pinned:
        if result.events < cp.events:
            return broken(result.events + 1, f"missing: the {cp.kind} of {cp.ts} recorded "
                                              f"{cp.events} events, the table has "
                                              f"{result.events} (the last rows were deleted)")
    if found.problems:
        result.ok, result.reason = False, found.problems[0]
    return result


def health(session: Session, cfg: Config | None = None) -> VerifyResult:
    """`verify`, plus "no checkpoint yet" as a failure: what `appliance doctor` reports.

    Args:
        session: an open session on the store.
        cfg: whose key and sink to use (default: `configure`'s, or the environment's).
    """
    result = verify(session, cfg)
    if result.events and result.checkpoint_events is None:
        where = _setup(cfg).checkpoints
        missing = (f"no checkpoint yet for this database in {str(where)!r}: a truncated chain "
                   f"could not be detected")
        result.findings.append(missing)
        if result.ok:
            result.ok, result.reason = False, missing
    elif result.ok and result.checkpoint_events is not None \
            and result.events > result.checkpoint_events:
        behind = result.events - result.checkpoint_events
        result.findings.append(f"the latest checkpoint is {behind} event(s) behind the head "
                               f"(written since, or a checkpoint failed: see the log)")
    return result


@operation("audit.anchor")
def anchor(session: Session, actor: User, cfg: Config | None = None) -> sink.Checkpoint:
    """Accept the unkeyed events written before the chain was keyed: once, explicitly.

    Checks their sha256 chain, appends a signed anchor (their count and head) to the sink and
    records ``audit.anchored``. Refused for unkeyed events at or after the first checkpoint:
    those were not written by a version without the key, but by someone rewriting the chain.

    Args:
        session: an open session; the event commits with the caller's transaction.
        actor: the acting user; needs the ``admin`` permission.

    Raises:
        PermissionDenied: `actor` is not an admin.
        ConflictError: there is nothing to anchor, or it would cover checkpointed events.
        CheckFailed: the unkeyed events do not form an intact sha256 chain.
    """
    # Deferred: users imports this module (it records its own events).
    from appliance.governance.users import require

    require(actor, "admin")
    setup = _setup(cfg)
    key = load_key(setup.key_file, create=True)
    db = sink.database_identity(session.get_bind().url)
    found = sink.read(setup.checkpoints, key, db)
    prev, count = GENESIS, 0
    for event in session.exec(select(AuditEvent).order_by(AuditEvent.id)):
        if event.key_id is not None:
            break
        if event.id != count + 1 or event.prev_hash != prev or _digest(event, None) != event.hash:
            raise CheckFailed(f"cannot anchor: unkeyed audit event {event.id} does not verify "
                              f"(`appliance audit verify` names the fault)")
        prev, count = event.hash, count + 1
    if count == 0:
        raise ConflictError("no unkeyed audit events to anchor: the chain is keyed from event 1")
    first = min((cp.events for cp in found.checkpoints), default=None)
    if first is not None and count >= first:
        raise ConflictError(
            f"refusing to anchor {count} unkeyed events: the checkpoint of this chain already "
            f"covered {first} events, so unkeyed events up to there were rewritten, not old"
        )
    cp = sink.make(key, sink.ANCHOR, db, count, prev)
    sink.append(setup.checkpoints, cp)
    record(session, actor.name, "audit.anchored", "audit", count,
           {"unkeyed_events": count, "head": prev, "key_id": key.key_id})
    return cp


class AuditEntryPublic(SQLModel):
    """One audit event: who did what to which object, when (as reports quote it)."""

    id: int
    ts: dt.datetime
    actor: str
    action: str
    object_type: str
    object_id: str
    details: dict[str, Any]


class AuditEventPublic(AuditEntryPublic):
    """One audit event as `appliance audit export` writes it for a SIEM: with its chain."""

    prev_hash: str
    hash: str
    key_id: str | None


def export(session: Session, since: dt.datetime | None = None) -> Iterator[AuditEventPublic]:
    """Events in chain order, those at or after `since` only (default: all).

    Raises:
        InvalidInput: `since` has no time zone.
    """
    query = select(AuditEvent).order_by(AuditEvent.id).execution_options(yield_per=1000)
    if since is not None:
        if since.tzinfo is None:
            raise InvalidInput(f"since {since.isoformat()!r} has no time zone")
        query = query.where(AuditEvent.ts >= since)
    for event in session.exec(query):
        yield AuditEventPublic.model_validate(event, from_attributes=True)


class AuditListedPublic(SQLModel):
    """`appliance audit list --json`: one event, its object as ``type/id``, and its hash."""

    id: int
    ts: dt.datetime
    actor: str
    action: str
    object: str
    details: dict[str, Any]
    hash: str


def listed(session: Session, limit: int, action: str | None = None) -> list[AuditListedPublic]:
    """`recent` as `appliance audit list` prints it."""
    return [AuditListedPublic(id=e.id, ts=e.ts, actor=e.actor, action=e.action,
                              object=f"{e.object_type}/{e.object_id}", details=e.details,
                              hash=e.hash)
            for e in recent(session, limit, action)]


def recent(session: Session, limit: int, action: str | None = None) -> list[AuditEvent]:
    """The newest `limit` events, oldest first.

    Args:
        session: the open transaction.
        limit: how many at most.
        action: only events whose action starts with this (default None: all).
    """
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    if action:
        query = query.where(AuditEvent.action.startswith(action))
    return list(reversed(session.exec(query).all()))
