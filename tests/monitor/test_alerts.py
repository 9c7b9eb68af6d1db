"""The alert lifecycle an owner acts on (`appliance.monitor.alerts`): notice, acknowledge,
resolve and list, with permissions, audit events and the notification outbox. Alerts raised
by rules over windows are tested with the monitor pass (test_service.py)."""

from __future__ import annotations

import pytest
from sqlmodel import select

from appliance.errors import ConflictError, InvalidInput, NotFound, PermissionDenied
from appliance.governance import audit
from appliance.governance.users import create_user
from appliance.monitor import alerts
from appliance.registry import models
from appliance.store import session_scope
from appliance.store.models import AlertDelivery, AuditEvent

HOOK = "http://127.0.0.1:9/hooks/alerts"


@pytest.fixture
def shop(request, tmp_path):
    """A store (the URL fixture the test asks for) with two models and a user of each role."""
    url = request.getfixturevalue("db_url" if "db_url" in request.fixturenames
                                  else "sqlite_url")
    with session_scope(url) as s:
        users = {"admin": create_user(s, "admin", "admin", actor="admin")}
        for name, role in [("ops", "operator"), ("risk", "approver"), ("eve", "viewer")]:
            users[name] = create_user(s, name, role, actor="admin", team="risk-models")
        models.ensure_model(s, "scorer", owner="ops", team="risk-models")
        models.update_model(s, users["ops"], "scorer",
                            runbook_url="https://runbooks.example/scorer")
        models.ensure_model(s, "other", owner="admin", team="platform")
    return url, users, alerts.Channels(tmp_path / "alerts.log", HOOK)


def raise_notice(url: str, channels: alerts.Channels, model: str = "scorer",
                 rule: str = "gate_failed") -> int:
    with session_scope(url) as s:
        return alerts.notice(s, model=model, deployment=model, rule=rule, severity="warning",
                             message=f"{model}: the challenger failed its gate",
                             channels=channels).id


def deliveries(url: str, alert_id: int) -> list[tuple[str, str, str]]:
    with session_scope(url) as s:
        rows = s.exec(select(AlertDelivery).where(AlertDelivery.alert_id == alert_id)
                      .order_by(AlertDelivery.id)).all()
        return [(d.event, d.channel, d.target) for d in rows]


def actions(url: str, alert_id: int) -> list[tuple[str, str]]:
    with session_scope(url) as s:
        rows = s.exec(select(AuditEvent).where(AuditEvent.object_type == "alert",
                                               AuditEvent.object_id == str(alert_id))
                      .order_by(AuditEvent.id)).all()
        return [(e.actor, e.action) for e in rows]


def test_a_notice_is_an_open_alert_to_the_models_owner_queued_on_every_channel(db_url, shop):
    url, _, channels = shop
    alert_id = raise_notice(url, channels)
    with session_scope(url) as s:
        (doc,) = alerts.list_alerts(s)
    assert (doc.id, doc.kind, doc.rule, doc.status, doc.severity) == (
        alert_id, "retrain", "gate_failed", "open", "warning")
    assert (doc.owner, doc.team, doc.runbook_url) == (
        "ops", "risk-models", "https://runbooks.example/scorer")
    assert (doc.model, doc.deployment, doc.window, doc.occurrences) == ("scorer", "scorer", None, 1)
    assert deliveries(url, alert_id) == [("raised", "log", str(channels.log_path)),
                                         ("raised", "webhook", HOOK)]
    assert actions(url, alert_id) == [("monitor", "alert.raised")]


def test_acknowledge_records_who_and_when_and_needs_operate(db_url, shop):
    url, users, channels = shop
    alert_id = raise_notice(url, channels)
    with session_scope(url) as s:
        for name in ("eve", "risk"):
            with pytest.raises(PermissionDenied, match="'operate'"):
                alerts.acknowledge(s, users[name], alert_id)
        alert = alerts.acknowledge(s, users["ops"], alert_id)
        assert (alert.status, alert.acknowledged_by) == ("acknowledged", "ops")
        assert alert.acknowledged_at is not None
    with session_scope(url) as s:
        with pytest.raises(ConflictError, match="is acknowledged, not open"):
            alerts.acknowledge(s, users["ops"], alert_id)
        with pytest.raises(NotFound, match="no alert #999"):
            alerts.acknowledge(s, users["ops"], 999)
    assert actions(url, alert_id) == [("monitor", "alert.raised"), ("ops", "alert.acknowledged")]
    # Acknowledging tells nobody: only raising and resolving are notified.
    assert [e for e, _, _ in deliveries(url, alert_id)] == ["raised", "raised"]


def test_resolve_records_who_and_why_and_queues_the_resolved_event(db_url, shop):
    url, users, channels = shop
    acked, fresh = raise_notice(url, channels), raise_notice(url, channels, rule="canary")
    with session_scope(url) as s:
        alerts.acknowledge(s, users["ops"], acked)
    with session_scope(url) as s:
        with pytest.raises(PermissionDenied):
            alerts.resolve(s, users["eve"], acked, None, channels)
        with pytest.raises(InvalidInput, match="longer than 2000"):
            alerts.resolve(s, users["ops"], acked, "x" * 2001, channels)
        alert = alerts.resolve(s, users["ops"], acked, "retrained by hand", channels)
        assert (alert.status, alert.resolved_by, alert.resolution) == (
            "resolved", "ops", "retrained by hand")
        # An open alert may be resolved without being acknowledged first.
        alert = alerts.resolve(s, users["admin"], fresh, None, channels)
        assert alert.resolution == "resolved by admin"
    with session_scope(url) as s, pytest.raises(ConflictError, match="already resolved"):
        alerts.resolve(s, users["ops"], acked, None, channels)
    assert actions(url, acked) == [("monitor", "alert.raised"), ("ops", "alert.acknowledged"),
                                   ("ops", "alert.resolved")]
    assert deliveries(url, acked) == [
        ("raised", "log", str(channels.log_path)), ("raised", "webhook", HOOK),
        ("resolved", "log", str(channels.log_path)), ("resolved", "webhook", HOOK)]
    with session_scope(url) as s:
        assert audit.verify(s).ok


def test_list_alerts_filters_by_status_and_model(sqlite_url, shop):
    url, users, channels = shop
    a = raise_notice(url, channels)
    b = raise_notice(url, channels, rule="canary")
    c = raise_notice(url, channels, model="other")
    d = raise_notice(url, channels, model="other", rule="canary")
    with session_scope(url) as s:
        alerts.acknowledge(s, users["ops"], b)
        alerts.resolve(s, users["ops"], d, None, channels)
    with session_scope(url) as s:
        def ids(**kwargs) -> list[int]:
            return [x.id for x in alerts.list_alerts(s, **kwargs)]

        assert ids() == [a, b, c]
        assert ids(status="active") == [a, b, c]
        assert ids(status="open") == [a, c]
        assert ids(status="acknowledged") == [b]
        assert ids(status="resolved") == [d]
        assert ids(status="all") == [a, b, c, d]
        assert ids(status="all", model="other") == [c, d]
        assert ids(model="scorer") == [a, b]
        assert ids(model="nobody") == []
        with pytest.raises(InvalidInput, match="unknown alert status 'closed'"):
            alerts.list_alerts(s, status="closed")
        other = alerts.list_alerts(s, status="all", model="other")
        assert {(x.owner, x.team, x.runbook_url) for x in other} == {("admin", "platform", None)}
        assert audit.verify(s).ok


def test_get_alert_names_the_missing_alert(sqlite_url, shop):
    url, _, channels = shop
    alert_id = raise_notice(url, channels)
    with session_scope(url) as s:
        assert alerts.get_alert(s, alert_id).id == alert_id
        with pytest.raises(NotFound, match=r"no alert #12345; list them"):
            alerts.get_alert(s, 12345)
