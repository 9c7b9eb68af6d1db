"""Turn an artifact that failed its digest check into a critical alert, then let it fail.

`raise_integrity_alert` raises (or repeats) the alert in a session the caller holds. The
verified reads (`appliance.artifacts`) raise `ArtifactIntegrityError` deep inside code that
holds no session, or one whose transaction is about to roll back with the error. `alerting`
wraps such a load: on a mismatch it raises the alert in a transaction of its own, commits it,
and re-raises, so the refusal and the alert both happen.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from sqlmodel import Session, col, select

from appliance.config import Config
from appliance.errors import ArtifactIntegrityError
from appliance.governance import audit
from appliance.monitor import notify
from appliance.store import session_scope
from appliance.store.models import Alert, AlertStatus, RegisteredModel, User, utcnow

if TYPE_CHECKING:
    from appliance.monitor.alerts import Channels

log = logging.getLogger(__name__)
INTEGRITY = "integrity"
_MONITOR = "monitor"
_ACTIVE = (AlertStatus.open.value, AlertStatus.acknowledged.value)


def raise_integrity_alert(
    session: Session, error: ArtifactIntegrityError, *, channels: Channels | None,
    now: dt.datetime | None = None,
) -> Alert:
    """Raise (or repeat) a critical alert for an artifact whose bytes no longer match its
    digest, to the owner of its model (an admin when it belongs to none); notified and
    audited like any alert.

    Args:
        session: open session; the caller commits.
        error: the mismatch (`appliance.artifacts` raises it on every verified read).
        channels: where notifications go (None: nowhere yet; the alert still lists, and the
            error was logged).
        now: the current time (default `utcnow()`).
    """
    now = now or utcnow()
    rule = f"{INTEGRITY}:{error.expected[:16]}"
    active = session.exec(select(Alert).where(
        Alert.kind == INTEGRITY, Alert.rule == rule, col(Alert.status).in_(_ACTIVE))).first()
    if active is not None:
        # The same corrupt artifact read again: one alert, counted, not a storm.
        active.occurrences += 1
        active.last_seen_at = now
        session.add(active)
        return active
    registered = session.get(RegisteredModel, error.model) if error.model else None
    if registered is not None:
        owner, team, runbook = registered.owner, registered.team, registered.runbook_url
    else:
        admin = session.exec(select(User).where(User.role == "admin").order_by(User.id)).first()
        owner, team, runbook = (admin.name if admin else "admin"), "default", None
    alert = Alert(
        kind=INTEGRITY, rule=rule, severity="critical", model_name=error.model or "",
        message=str(error), owner=owner, team=team, runbook_url=runbook, created_at=now,
        last_seen_at=now,
    )
    session.add(alert)
    session.flush()
    if channels is not None:
        notify.enqueue(session, alert, "raised", log_path=channels.log_path,
                       webhook=channels.webhook)
    audit.record(session, _MONITOR, "alert.raised", "alert", alert.id, {
        "rule": rule, "kind": INTEGRITY, "severity": "critical", "artifact": error.what,
        "expected": error.expected, "actual": error.actual,
        "path": str(error.path) if error.path is not None else None, "model": error.model,
    })
    return alert


@contextlib.contextmanager
def alerting(cfg: Config) -> Iterator[None]:
    """Raise a critical alert (`raise_integrity_alert`) for an integrity error escaping
    the block, then re-raise it.

    Args:
        cfg: the configuration (its store and alert channels).
    """
    # Deferred: alerts imports window_stats, which raises these alerts itself.
    from appliance.monitor.alerts import Channels

    try:
        yield
    except ArtifactIntegrityError as exc:
        try:
            with session_scope(cfg.db_url) as session:
                raise_integrity_alert(
                    session, exc, channels=Channels(cfg.alerts_log, cfg.alert_webhook))
        except Exception:  # noqa: BLE001 - the integrity error is the one to report
            log.exception("could not raise the integrity alert for %s", exc.what)
        raise
