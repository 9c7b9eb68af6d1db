"""Overdue periodic reviews as alerts (see `appliance.governance.reviews`).

Each monitor pass raises one "review" alert per model whose review is overdue, unless one is
open or acknowledged already, and resolves it once a review is recorded (or the interval
was lengthened so it is no longer due). Deduplicated like window alerts: one active alert per
model and rule.
"""

from __future__ import annotations

import datetime as dt

from sqlmodel import Session, col, select

from appliance.governance import reviews
from appliance.monitor import alerts
from appliance.store.models import Alert, AlertStatus, RegisteredModel, utcnow

RULE = "review_overdue"
_ACTIVE = (AlertStatus.open.value, AlertStatus.acknowledged.value)


def _active(session: Session, model: str) -> Alert | None:
    return session.exec(select(Alert).where(
        Alert.model_name == model, Alert.rule == RULE, col(Alert.status).in_(_ACTIVE),
    ).order_by(col(Alert.id).desc())).first()


def check(session: Session, channels: alerts.Channels, now: dt.datetime | None = None
          ) -> alerts.Changes:
    """Raise or resolve the review alerts of every model as of `now` (default now).

    Args:
        session: an open session; the caller commits (alerts, outbox and audit together).
        channels: where notifications go.
        now: the current time (default `utcnow()`).
    """
    now = now or utcnow()
    changes = alerts.Changes()
    for model in session.exec(select(RegisteredModel).order_by(RegisteredModel.name)).all():
        status = reviews.review_status(session, model, now)
        active = _active(session, model.name)
        if not status.overdue:
            if active is not None:
                alerts.clear(session, active, f"reviewed: next review due "
                             f"{status.due_at:%Y-%m-%d}", channels, now)
                changes.resolved.append(active)
            continue
        if active is not None:
            continue
        severity = "critical" if model.risk_tier == "high" else "warning"
        last = (f"last reviewed {status.last_reviewed_at:%Y-%m-%d} by {status.last_reviewer}"
                if status.last_reviewed_at else "never reviewed")
        alert = alerts.notice(
            session, model=model.name, deployment=None, rule=RULE, severity=severity,
            message=(f"{model.name}: periodic review overdue since {status.due_at:%Y-%m-%d} "
                     f"(risk tier {model.risk_tier}, every {status.interval_days} days; "
                     f"{last}); an approver records one with `appliance review "
                     f"{model.name} --notes ...`"),
            channels=channels, now=now, kind="review")
        changes.raised.append(alert)
    return changes
