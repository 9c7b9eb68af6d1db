"""The tamper-evident audit log.

Each event stores the hash of the previous event and its own hash over (sequence number, time,
actor, action, object, details, previous hash). Editing any field, deleting or reordering rows
breaks the chain, and `verify` names the first event where it breaks. Appends are serialised
(an advisory lock on PostgreSQL, IMMEDIATE transactions on SQLite), and `prev_hash` is unique as
a backstop: two writers that read the same head can never both append.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from appliance.store.models import AuditEvent, utcnow

GENESIS = "0" * 64
_RETRIES = 5
# Key of the PostgreSQL advisory lock that serialises appends (any constant; "AUDT").
_PG_LOCK_KEY = 0x41554454


def _serialise_appends(session: Session) -> None:
    # PostgreSQL: hold a transaction-scoped lock so concurrent appenders queue instead of
    # racing for the head. SQLite needs nothing here: its transactions begin IMMEDIATE
    # (see appliance.store.database), which already admits one writer at a time.
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})


def _digest(event: AuditEvent) -> str:
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
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


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

    Args:
        session: an open session; the event commits with the caller's transaction.
        actor: user or service-token name performing the action.
        action: dotted verb, e.g. ``model.promote.approved``.
        object_type: what was acted on (``model``, ``dataset``...).
        object_id: its identifier.
        details: small JSON-able context (default none).
    """
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
        )
        event.hash = _digest(event)
        try:
            with session.begin_nested():
                session.add(event)
                session.flush()
            return event
        except IntegrityError:
            if attempt == _RETRIES - 1:
                raise
    raise AssertionError("unreachable")


@dataclasses.dataclass
class VerifyResult:
    """Outcome of `verify`: ok, how many events were checked, and where it broke."""

    ok: bool
    events: int
    head: str
    broken_at: int | None = None
    reason: str | None = None


def verify(session: Session) -> VerifyResult:
    """Walk the chain from the first event; stop at the first inconsistency."""
    prev = GENESIS
    expected_id = 1
    count = 0
    for event in session.exec(select(AuditEvent).order_by(AuditEvent.id)):
        count += 1
        if event.id != expected_id:
            return VerifyResult(False, count, prev, event.id, f"event {expected_id} is missing")
        if event.prev_hash != prev:
            return VerifyResult(
                False, count, prev, event.id, "previous-hash link broken (a row was removed)"
            )
        if _digest(event) != event.hash:
            return VerifyResult(False, count, prev, event.id, "content does not match its hash")
        prev = event.hash
        expected_id += 1
    return VerifyResult(True, count, prev)
