"""Sending alert notifications from the outbox: at least once, never twice for one event.

The monitor raises or resolves an `Alert` and, in the same transaction, `enqueue`s one
`AlertDelivery` row per (alert, event, channel): "log" (a JSON line appended to
`Config.alerts_log`, always) and "webhook" (an HTTP POST to `Config.alert_webhook`, when set).
Only after that commit does `deliver_pending` send them: nobody hears of an alert that was
rolled back, and an alert whose sender crashed is still in the outbox.

A delivery moves through these states:

    pending ──claim──> sending ──2xx / line written──────────────> delivered
       ^                  ├──retryable, attempts left──> pending (later next_attempt_at)
       │                  └──permanent, or attempts used up──> failed
       └── claim expired (the sender died) ── sending is due again

Why at least once: the claim (status "sending", `claimed_by`, `claimed_until`) is committed
before anything is sent, and the outcome after. A sender that dies in between leaves the row
in "sending"; once `claimed_until` has passed, the next `deliver_pending` claims it again and
sends it again. If the first send had reached the receiver (a crash between its 2xx and our
commit), the receiver hears the event twice, and both requests carry the same
``Idempotency-Key`` (the document's ``event_id``) so it can drop the second; log lines carry
the same ``event_id``.

Why never twice otherwise: a row is claimed by one conditional UPDATE whose WHERE repeats the
"due" test, and the claimer checks its row count. Of two processes that both saw a row as due,
only one UPDATE matches: PostgreSQL re-checks the WHERE against the row the first claimer
committed, and SQLite admits one writer at a time (IMMEDIATE transactions, see
`appliance.store.database`). A claimed row is not due again until its claim expires; a sender
starts a try only while at least half of its claim remains, so a live sender is done before
anyone may take the row over; and an outcome is written only while the row is still "sending"
under its sender's name.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, and_, or_, select, update

import appliance
from appliance.errors import InvalidInput
from appliance.governance import audit
from appliance.monitor.alert_record import AlertFields, alert_fields
from appliance.monitor.log_files import write_synced
from appliance.store.database import session_scope
from appliance.store.models import Alert, AlertDelivery, utcnow

EVENTS = ("raised", "resolved")
CHANNELS = ("log", "webhook")
USER_AGENT = f"appliance/{appliance.__version__} (alert notifier)"

_TIMEOUT_S = 5.0
# HTTP statuses worth trying again besides 5xx: the receiver is busy, not refusing the event.
_RETRYABLE_4XX = frozenset({408, 429})
_ERROR_CHARS = 300


class AlertNotification(AlertFields):
    """The document each channel receives for one event of one alert."""

    event_id: str
    event: str
    window_id: int | None


@dataclasses.dataclass
class DeliveryStats:
    """What one `deliver_pending` call did: deliveries delivered, put back for a later call
    (retried), and given up (failed)."""

    delivered: int = 0
    retried: int = 0
    failed: int = 0


@dataclasses.dataclass(frozen=True)
class _Outcome:
    ok: bool
    retryable: bool = False
    error: str | None = None


def _check_event(event: str) -> None:
    if event not in EVENTS:
        raise InvalidInput(f"alert event {event!r} is unknown; expected one of {list(EVENTS)}")


def event_id(alert_id: int, event: str) -> str:
    """The stable identifier of `event` of alert `alert_id`: the webhook's Idempotency-Key."""
    return f"alert-{alert_id}-{event}"


def alert_document(alert: Alert, event: str) -> dict[str, Any]:
    """The JSON payload for `event` ("raised" or "resolved") of `alert`, the same on every
    channel; datetimes are ISO 8601 strings."""
    _check_event(event)
    if alert.id is None:
        raise InvalidInput("the alert has no id yet: add it and flush the session first")
    notice = AlertNotification(event_id=event_id(alert.id, event), event=event,
                               window_id=alert.window_id, **alert_fields(alert))
    return notice.model_dump(mode="json")


def _existing(session: Session, alert_id: int, event: str, channel: str) -> AlertDelivery | None:
    return session.exec(
        select(AlertDelivery).where(
            AlertDelivery.alert_id == alert_id,
            AlertDelivery.event == event,
            AlertDelivery.channel == channel,
        )
    ).first()


def enqueue(
    session: Session, alert: Alert, event: str, *, log_path: Path | str, webhook: str | None
) -> list[AlertDelivery]:
    """Add the outbox rows for `event` of `alert` in the caller's transaction; idempotent.

    Args:
        session: an open session; the rows commit with the caller's transaction.
        alert: the alert, already flushed (it has an id).
        event: "raised" or "resolved".
        log_path: the alerts log (`Config.alerts_log`); the "log" channel is always queued.
        webhook: the URL to POST to (`Config.alert_webhook`), or None for no "webhook" row.

    Returns the rows, log first: those already queued for (alert, event, channel) as they
    are, the others new.
    """
    _check_event(event)
    if alert.id is None:
        raise InvalidInput("the alert has no id yet: add it and flush the session first")
    targets = {"log": str(log_path)}
    if webhook:
        targets["webhook"] = webhook
    rows = []
    for channel, target in targets.items():
        row = _existing(session, alert.id, event, channel)
        if row is None:
            row = AlertDelivery(alert_id=alert.id, event=event, channel=channel, target=target)
            try:
                with session.begin_nested():
                    session.add(row)
            except IntegrityError:
                # Another transaction queued the same (alert, event, channel) meanwhile.
                row = _existing(session, alert.id, event, channel)
                if row is None:
                    raise
        rows.append(row)
    return rows


def _origin(url: str) -> str:
    """`url` cut to scheme, host and port: webhook paths and queries often hold a secret."""
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<webhook>"
    return f"{parts.scheme}://{parts.hostname or ''}{port}"


def _short_error(exc: BaseException, target: str) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if target:
        text = text.replace(target, _origin(target))
    return text[:_ERROR_CHARS]


def _write_line(path: Path, doc: dict[str, Any]) -> _Outcome:
    data = (json.dumps(doc, sort_keys=True) + "\n").encode()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # One O_APPEND write per line, so concurrent writers never interleave inside a line.
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            write_synced(fd, data)
        finally:
            os.close(fd)
    except OSError as exc:
        # A full disk or a wrong permission may be fixed by the next call.
        return _Outcome(ok=False, retryable=True, error=_short_error(exc, ""))
    return _Outcome(ok=True)


def _post(client: httpx.Client, url: str, doc: dict[str, Any]) -> _Outcome:
    headers = {"Idempotency-Key": doc["event_id"], "User-Agent": USER_AGENT}
    try:
        response = client.post(url, json=doc, headers=headers)
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
        # The configured URL itself is wrong: no retry will fix it.
        return _Outcome(ok=False, error=_short_error(exc, url))
    except httpx.RequestError as exc:
        # Refused or reset connections, timeouts, broken responses: the receiver may recover.
        return _Outcome(ok=False, retryable=True, error=_short_error(exc, url))
    if response.is_success:
        return _Outcome(ok=True)
    code = response.status_code
    error = f"HTTP {code} {response.reason_phrase}".strip()
    return _Outcome(ok=False, retryable=code >= 500 or code in _RETRYABLE_4XX, error=error)


def _due(now: dt.datetime):
    return or_(
        and_(AlertDelivery.status == "pending", AlertDelivery.next_attempt_at <= now),
        and_(AlertDelivery.status == "sending", AlertDelivery.claimed_until < now),
    )


def _claim(
    db_url: str, delivery_id: int, holder: str, now: dt.datetime, until: dt.datetime
) -> bool:
    """Take delivery `delivery_id` for `holder` and commit; False when another claimer won."""
    with session_scope(db_url) as session:
        result = session.exec(
            update(AlertDelivery)
            .where(AlertDelivery.id == delivery_id, _due(now))
            .values(status="sending", claimed_by=holder, claimed_until=until)
            .execution_options(synchronize_session=False)
        )
        return result.rowcount == 1


def _record(
    db_url: str,
    delivery: AlertDelivery,
    holder: str,
    outcome: _Outcome,
    *,
    attempts: int,
    max_attempts: int,
    now: dt.datetime,
    retry_delay_s: float,
) -> str | None:
    """Write the outcome of a claimed delivery, with its audit event, in one transaction.

    Returns the new status, or None when the claim was lost (the row is no longer "sending"
    under `holder`) and nothing was written.
    """
    if outcome.ok:
        status = "delivered"
        values: dict[str, Any] = {"delivered_at": now, "last_error": None}
    elif outcome.retryable and attempts < max_attempts:
        status = "pending"
        values = {
            "last_error": outcome.error,
            "next_attempt_at": now + dt.timedelta(seconds=retry_delay_s),
        }
    else:
        status = "failed"
        values = {"last_error": outcome.error}
    with session_scope(db_url) as session:
        result = session.exec(
            update(AlertDelivery)
            .where(
                AlertDelivery.id == delivery.id,
                AlertDelivery.status == "sending",
                AlertDelivery.claimed_by == holder,
            )
            .values(status=status, attempts=attempts, claimed_by=None, claimed_until=None,
                    **values)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:
            return None
        details = {"channel": delivery.channel, "event": delivery.event, "attempts": attempts}
        if status == "delivered":
            # FOR UPDATE: the log and webhook outcomes of one alert may be recorded at once.
            alert = session.exec(
                select(Alert).where(Alert.id == delivery.alert_id).with_for_update()
            ).one()
            if delivery.channel not in alert.notified:
                alert.notified = [*alert.notified, delivery.channel]
                session.add(alert)
            audit.record(session, "monitor", "alert.notified", "alert", delivery.alert_id,
                         details)
        elif status == "failed":
            audit.record(session, "monitor", "alert.notify_failed", "alert", delivery.alert_id,
                         {**details, "error": outcome.error})
    return status


def _load(db_url: str, delivery_id: int) -> tuple[AlertDelivery, dict[str, Any]]:
    with session_scope(db_url) as session:
        delivery = session.get(AlertDelivery, delivery_id)
        alert = session.get(Alert, delivery.alert_id)
        return delivery, alert_document(alert, delivery.event)


def _validate(holder: str, now: dt.datetime | None, limits: dict[str, tuple[float, float]]) -> None:
    if not holder:
        raise InvalidInput("holder must name the delivering process, e.g. leases.holder_id()")
    if now is not None and now.utcoffset() is None:
        raise InvalidInput(f"now must be timezone-aware UTC, got the naive {now.isoformat()!r}")
    for name, (value, least) in limits.items():
        if not value >= least:
            raise InvalidInput(f"{name} must be at least {least}, got {value!r}")


def deliver_pending(
    db_url: str,
    *,
    holder: str,
    now: dt.datetime | None = None,
    client: httpx.Client | None = None,
    max_attempts: int = 16,
    tries_per_call: int = 3,
    base_delay_s: float = 0.25,
    max_delay_s: float = 600.0,
    claim_s: float = 60.0,
    sleep: Callable[[float], None] = time.sleep,
) -> DeliveryStats:
    """Send every due delivery of the outbox once, and record each outcome.

    A delivery is due when it is "pending" with `next_attempt_at` reached, or "sending" with
    `claimed_until` passed (its sender died mid-send). Each is claimed and committed before it
    is sent; see the module docstring for why no delivery is sent twice by two callers. A
    failing receiver never raises here: its delivery goes back to "pending" or to "failed".

    Args:
        db_url: the metadata store.
        holder: who sends (e.g. `appliance.store.leases.holder_id()`), written to `claimed_by`.
        now: the current time, timezone-aware (default `utcnow()`). The call's clock starts
            there and advances with the monotonic clock, so claims taken late in a long call
            still last `claim_s`.
        client: the HTTP client for webhooks (default: one made for this call, 5 s timeouts).
        max_attempts: tries in total, over all calls, before a delivery fails (default 16:
            with the doubling delays, about half an hour of a receiver being down).
        tries_per_call: tries of one delivery within this call (default 3).
        base_delay_s: first backoff delay; it doubles per try (default 0.25 s).
        max_delay_s: longest delay between tries (default 600 s).
        claim_s: how long a claim keeps others off a delivery (default 60 s); a try starts
            only while at least half of it remains, so keep it over twice the longest try.
        sleep: waits between tries within this call (default `time.sleep`).
    """
    _validate(holder, now, {
        "max_attempts": (max_attempts, 1), "tries_per_call": (tries_per_call, 1),
        "base_delay_s": (base_delay_s, 0), "max_delay_s": (max_delay_s, 0),
        "claim_s": (claim_s, 1),
    })
    start = (now or utcnow()).astimezone(dt.timezone.utc)
    started = time.monotonic()

    def clock() -> dt.datetime:
        return start + dt.timedelta(seconds=time.monotonic() - started)

    def delay(exponent: int) -> float:
        return min(max_delay_s, base_delay_s * 2.0**exponent)

    stats = DeliveryStats()
    with session_scope(db_url) as session:
        due_ids = list(session.exec(
            select(AlertDelivery.id)
            .where(_due(start))
            .order_by(AlertDelivery.next_attempt_at, AlertDelivery.id)
        ))
    own_client = client is None
    http = httpx.Client(timeout=_TIMEOUT_S) if own_client else client
    try:
        for delivery_id in due_ids:
            claimed_at = clock()
            until = claimed_at + dt.timedelta(seconds=claim_s)
            if not _claim(db_url, delivery_id, holder, claimed_at, until):
                continue  # another process has it, or it is no longer due
            delivery, doc = _load(db_url, delivery_id)
            attempts = delivery.attempts
            outcome = _Outcome(
                ok=False, error=f"{attempts} attempts made, the most allowed is {max_attempts}"
            )
            for tried in range(tries_per_call):
                if attempts >= max_attempts:
                    break
                if tried:
                    wait = delay(tried - 1)
                    half_claim = until - dt.timedelta(seconds=claim_s / 2)
                    if clock() + dt.timedelta(seconds=wait) > half_claim:
                        break  # the claim could run out mid-try; the next call goes on
                    sleep(wait)
                if delivery.channel == "log":
                    outcome = _write_line(Path(delivery.target), doc)
                elif delivery.channel == "webhook":
                    outcome = _post(http, delivery.target, doc)
                else:
                    outcome = _Outcome(ok=False, error=f"unknown channel {delivery.channel!r}")
                attempts += 1
                if outcome.ok or not outcome.retryable:
                    break
            status = _record(
                db_url, delivery, holder, outcome, attempts=attempts,
                max_attempts=max_attempts, now=clock(), retry_delay_s=delay(attempts),
            )
            if status == "delivered":
                stats.delivered += 1
            elif status == "pending":
                stats.retried += 1
            elif status == "failed":
                stats.failed += 1
    finally:
        if own_client:
            http.close()
    return stats
