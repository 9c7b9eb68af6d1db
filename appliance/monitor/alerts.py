"""Alerts: raised by rules over windows, deduplicated, cooled down, acknowledged, resolved.

An alert is one firing of one rule for one deployment. While it is open or acknowledged,
further breaches update it (`occurrences`, `last_window_id`) instead of raising another; a
window of a later index that no longer breaches resolves it ("monitor" resolves it, with the
window named). After a resolution the rule stays quiet for its `cooldown_seconds`. Every alert
carries the model's owner, team and runbook. Raising and resolving write the notification
outbox (`appliance.monitor.notify`) in the same transaction, and an audit event.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

from sqlmodel import Session, col, select

from appliance.errors import ConflictError, InvalidInput, NotFound
from appliance.governance import audit
from appliance.governance.operations import operation
from appliance.governance.users import require
from appliance.monitor import notify
from appliance.monitor.alert_record import AlertFields, alert_fields
from appliance.monitor.rules import AlertRule, window_value
from appliance.monitor.window_stats import main_slice
from appliance.store.models import (
    Alert,
    AlertStatus,
    DriftReport,
    ModelVersion,
    PredictionWindow,
    RegisteredModel,
    User,
    WindowVersion,
    utcnow,
)

MONITOR = "monitor"
_ACTIVE = (AlertStatus.open.value, AlertStatus.acknowledged.value)


class AlertPublic(AlertFields):
    """An alert as the CLI, the console and HTTP show it: its windows by index."""

    window: int | None
    last_window: int | None
    notified: list[str]
    last_seen_at: dt.datetime | None


def to_public(session: Session, alert: Alert) -> AlertPublic:
    def index(window_id: int | None) -> int | None:
        window = session.get(PredictionWindow, window_id) if window_id else None
        return window.index if window else None

    return AlertPublic(
        window=index(alert.window_id), last_window=index(alert.last_window_id),
        notified=list(alert.notified or []), last_seen_at=alert.last_seen_at,
        **alert_fields(alert),
    )


@dataclasses.dataclass(frozen=True)
class Channels:
    """Where notifications go: the alerts log file, and a webhook URL if configured."""

    log_path: Path
    webhook: str | None = None


@dataclasses.dataclass
class Changes:
    """What one evaluation did: alerts raised (new), updated (deduplicated), resolved."""

    raised: list[Alert] = dataclasses.field(default_factory=list)
    updated: list[Alert] = dataclasses.field(default_factory=list)
    resolved: list[Alert] = dataclasses.field(default_factory=list)

    def extend(self, other: Changes) -> None:
        self.raised += other.raised
        self.updated += other.updated
        self.resolved += other.resolved


def _slice_value(
    session: Session, rule: AlertRule, window: PredictionWindow
) -> tuple[float | None, WindowVersion | None]:
    stats = main_slice(list(session.exec(
        select(WindowVersion).where(WindowVersion.window_id == window.id)
    ).all()))
    if stats is None:
        return None, None
    report = None
    if rule.statistic:
        row = session.exec(select(DriftReport).where(
            DriftReport.window_id == window.id, DriftReport.version_id == stats.version_id,
            DriftReport.shadow == stats.shadow,
        )).first()
        report = row.report if row else None
    return window_value(rule, stats, report), stats


def _reference(session: Session, rule: AlertRule, stats: WindowVersion) -> float | None:
    metric = rule.reference_metric
    if metric is None:
        return None
    version = session.get(ModelVersion, stats.version_id)
    value = (version.metrics or {}).get(metric) if version else None
    return float(value) if isinstance(value, (int, float)) else None


def _breach(session: Session, rule: AlertRule, window: PredictionWindow
            ) -> tuple[bool | None, float | None, float | None, WindowVersion | None]:
    """(breached, value, the limit it was held to, the slice) for one window."""
    value, stats = _slice_value(session, rule, window)
    if value is None:
        return None, None, None, stats
    reference = _reference(session, rule, stats)
    return rule.breached(value, reference), value, rule.limit(reference), stats


def _streak(session: Session, rule: AlertRule, window: PredictionWindow) -> bool:
    """True when the `consecutive - 1` windows before `window` breached too."""
    if rule.consecutive <= 1:
        return True
    earlier = session.exec(
        select(PredictionWindow).where(
            PredictionWindow.deployment == window.deployment,
            PredictionWindow.index < window.index,
        ).order_by(col(PredictionWindow.index).desc()).limit(rule.consecutive - 1)
    ).all()
    if len(earlier) < rule.consecutive - 1:
        return False
    return all(_breach(session, rule, w)[0] for w in earlier)


def _active(session: Session, deployment: str, rule: str) -> Alert | None:
    return session.exec(select(Alert).where(
        Alert.deployment == deployment, Alert.rule == rule, col(Alert.status).in_(_ACTIVE),
    ).order_by(col(Alert.id).desc())).first()


def _cooling(session: Session, deployment: str, rule: AlertRule, now: dt.datetime) -> bool:
    last = session.exec(select(Alert).where(
        Alert.deployment == deployment, Alert.rule == rule.name,
        Alert.status == AlertStatus.resolved.value,
    ).order_by(col(Alert.resolved_at).desc())).first()
    return bool(last and last.resolved_at
                and now - last.resolved_at < dt.timedelta(seconds=rule.cooldown_seconds))


def _message(model: RegisteredModel, rule: AlertRule, window: PredictionWindow, value: float,
             reference: float | None, stats: WindowVersion, session: Session) -> str:
    text = (f"{model.name} v{stats.version}: {rule.describe(reference)} in window "
            f"{window.index} of {window.deployment} (value {value:.4g})")
    if rule.kind == "drift":
        report = session.exec(select(DriftReport).where(
            DriftReport.window_id == window.id, DriftReport.version_id == stats.version_id,
            DriftReport.shadow == stats.shadow,
        )).first()
        if report and report.drifted_features:
            text += f"; drifted: {', '.join(report.drifted_features[:8])}"
    if rule.kind == "accuracy":
        text += f"; {stats.labelled_rows} labelled rows"
    return text


def evaluate(
    session: Session, rules: tuple[AlertRule, ...], window: PredictionWindow, *,
    kinds: tuple[str, ...], channels: Channels, now: dt.datetime | None = None,
) -> Changes:
    """Evaluate the rules of `kinds` on `window` and raise, update or resolve alerts.

    Args:
        session: open session; the caller commits (alerts, outbox and audit together).
        rules: the configured rules.
        window: the window whose values are new (just closed, or new labels arrived).
        kinds: which rule kinds to evaluate now ("drift", "accuracy", "estimated_accuracy").
        channels: where notifications go.
        now: the current time (default `utcnow()`).
    """
    now = now or utcnow()
    changes = Changes()
    for rule in rules:
        if rule.kind not in kinds:
            continue
        breached, value, limit, stats = _breach(session, rule, window)
        if breached is None or stats is None:
            continue
        version = session.get(ModelVersion, stats.version_id)
        model = session.get(RegisteredModel, version.model_name)
        if not rule.applies_to(model.name):
            continue
        active = _active(session, window.deployment, rule.name)
        if not breached:
            # The same window can clear it too: its first labels breached, the rest do not.
            if active is not None and (active.last_window_id or 0) <= window.id:
                _resolve(session, active, MONITOR,
                         f"condition cleared in window {window.index}", channels, now)
                changes.resolved.append(active)
            continue
        if not _streak(session, rule, window):
            continue
        if active is not None:
            if (active.last_window_id or 0) < window.id:
                active.occurrences += 1
                active.last_window_id, active.value, active.last_seen_at = window.id, value, now
                session.add(active)
                changes.updated.append(active)
            continue
        if _cooling(session, window.deployment, rule, now):
            continue
        reference = _reference(session, rule, stats)
        alert = Alert(
            kind=rule.kind, rule=rule.name, severity=rule.severity, model_name=model.name,
            deployment=window.deployment, version=stats.version, window_id=window.id,
            last_window_id=window.id, value=value, threshold=limit,
            message=_message(model, rule, window, value, reference, stats, session),
            owner=model.owner, team=model.team, runbook_url=model.runbook_url,
            created_at=now, last_seen_at=now,
        )
        session.add(alert)
        session.flush()
        notify.enqueue(session, alert, "raised", log_path=channels.log_path,
                       webhook=channels.webhook)
        audit.record(session, MONITOR, "alert.raised", "alert", alert.id, {
            "rule": rule.name, "kind": rule.kind, "model": model.name,
            "deployment": window.deployment, "window": window.index, "value": value,
            "owner": model.owner, "team": model.team,
        })
        changes.raised.append(alert)
    return changes


def notice(
    session: Session, *, model: str, deployment: str | None, rule: str, severity: str,
    message: str, channels: Channels, now: dt.datetime | None = None, kind: str = "retrain",
) -> Alert:
    """Tell a model's owner of something found outside a window: by default something the
    retrain loop did on its own (a challenger that failed its gate, an aborted canary), an
    open alert of `kind` "retrain"; "review" for an overdue periodic review. Delivered like
    any other; the owner acknowledges and resolves it."""
    now = now or utcnow()
    registered = session.get(RegisteredModel, model)
    if registered is None:
        raise NotFound(f"no model named {model!r} to notify the owner of")
    alert = Alert(
        kind=kind, rule=rule, severity=severity, model_name=model, deployment=deployment,
        message=message, owner=registered.owner, team=registered.team,
        runbook_url=registered.runbook_url, created_at=now, last_seen_at=now,
    )
    session.add(alert)
    session.flush()
    notify.enqueue(session, alert, "raised", log_path=channels.log_path,
                   webhook=channels.webhook)
    audit.record(session, MONITOR, "alert.raised", "alert", alert.id,
                 {"rule": rule, "kind": kind, "model": model, "owner": registered.owner})
    return alert


def clear(session: Session, alert: Alert, resolution: str, channels: Channels,
          now: dt.datetime | None = None) -> None:
    """Resolve `alert` as the monitor because its condition no longer holds (audited,
    the owner's channels told), e.g. an overdue review that has since been recorded."""
    _resolve(session, alert, MONITOR, resolution, channels, now or utcnow())


def _resolve(session: Session, alert: Alert, actor: str, resolution: str, channels: Channels,
             now: dt.datetime) -> None:
    alert.status, alert.resolved_by, alert.resolved_at = AlertStatus.resolved.value, actor, now
    alert.resolution = resolution
    session.add(alert)
    session.flush()
    notify.enqueue(session, alert, "resolved", log_path=channels.log_path,
                   webhook=channels.webhook)
    audit.record(session, actor, "alert.resolved", "alert", alert.id,
                 {"resolution": resolution, "model": alert.model_name})


def get_alert(session: Session, alert_id: int) -> Alert:
    alert = session.get(Alert, alert_id)
    if alert is None:
        raise NotFound(f"no alert #{alert_id}; list them with `appliance alerts list`")
    return alert


@operation("alerts.ack")
def acknowledge(session: Session, user: User, alert_id: int) -> Alert:
    """Record that `user` is on alert `alert_id` (needs "operate")."""
    require(user, "operate")
    alert = get_alert(session, alert_id)
    if alert.status != AlertStatus.open.value:
        raise ConflictError(f"alert #{alert_id} is {alert.status}, not open")
    alert.status = AlertStatus.acknowledged.value
    alert.acknowledged_by, alert.acknowledged_at = user.name, utcnow()
    session.add(alert)
    audit.record(session, user.name, "alert.acknowledged", "alert", alert_id,
                 {"model": alert.model_name})
    return alert


@operation("alerts.resolve")
def resolve(session: Session, user: User, alert_id: int, comment: str | None,
            channels: Channels) -> Alert:
    """Resolve alert `alert_id` as `user` (needs "operate"), telling the owner's channels."""
    require(user, "operate")
    alert = get_alert(session, alert_id)
    if alert.status == AlertStatus.resolved.value:
        raise ConflictError(f"alert #{alert_id} is already resolved "
                            f"(by {alert.resolved_by} at {alert.resolved_at:%Y-%m-%d %H:%M})")
    if comment is not None and len(comment) > 2000:
        raise InvalidInput("the resolution comment is longer than 2000 characters")
    _resolve(session, alert, user.name, comment or f"resolved by {user.name}", channels, utcnow())
    return alert


def list_alerts(
    session: Session, *, status: str = "active", model: str | None = None
) -> list[AlertPublic]:
    """Alerts by `status` ("active" = open or acknowledged, "open", "acknowledged",
    "resolved", "all"), oldest first, optionally of one `model`."""
    query = select(Alert).order_by(Alert.id)
    if status == "active":
        query = query.where(col(Alert.status).in_(_ACTIVE))
    elif status in (s.value for s in AlertStatus):
        query = query.where(Alert.status == status)
    elif status != "all":
        raise InvalidInput(f"unknown alert status {status!r}; use active, open, acknowledged, "
                           "resolved or all")
    if model:
        query = query.where(Alert.model_name == model)
    return [to_public(session, a) for a in session.exec(query).all()]
