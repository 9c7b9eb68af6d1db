"""Review policies: a model's tier and review interval, recorded reviews, and the alert an
overdue review raises in the monitor's pass."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlmodel import select

from appliance.config import Config
from appliance.errors import InvalidInput, NotFound, PermissionDenied
from appliance.governance import reviews
from appliance.governance.users import create_user
from appliance.monitor import alerts, review_alerts, service
from appliance.registry import models
from appliance.store import migrate, session_scope
from appliance.store.models import AuditEvent, User, utcnow


def _setup(url):
    with session_scope(url) as s:
        create_user(s, "root", "admin", actor="root")
        create_user(s, "ops", "operator", actor="root")
        create_user(s, "risk", "approver", actor="root")
        models.ensure_model(s, "credit", owner="ops", team="credit", risk_tier="high")
        models.ensure_model(s, "toy", owner="ops", team="credit")


def _user(s, name):
    return s.exec(select(User).where(User.name == name)).one()


def _actions(url, model):
    with session_scope(url) as s:
        return [(e.actor, e.action, e.details) for e in s.exec(
            select(AuditEvent).where(AuditEvent.object_id == model).order_by(AuditEvent.id))]


def test_the_tier_sets_the_interval_until_an_approver_sets_the_models_own(db_url):
    _setup(db_url)
    with session_scope(db_url) as s:
        credit, toy = models.get_model(s, "credit"), models.get_model(s, "toy")
        assert (reviews.interval_days(credit), reviews.interval_days(toy)) == (90, 180)
        with pytest.raises(PermissionDenied, match="'approve'"):
            models.update_model(s, _user(s, "ops"), "toy", review_interval_days=30)
        with pytest.raises(InvalidInput, match="from 1 to 3650"):
            models.update_model(s, _user(s, "risk"), "toy", review_interval_days=0)
        models.update_model(s, _user(s, "risk"), "toy", review_interval_days=30)
    with session_scope(db_url) as s:
        assert reviews.interval_days(models.get_model(s, "toy")) == 30
    assert _actions(db_url, "toy")[-1] == ("risk", "model.updated", {"review_interval_days": 30})
    assert _actions(db_url, "credit")[0][2]["risk_tier"] == "high"


def test_a_review_is_recorded_by_an_approver_audited_and_moves_the_due_date(db_url):
    _setup(db_url)
    later = utcnow() + dt.timedelta(days=100)
    with session_scope(db_url) as s:
        status = reviews.review_status(s, models.get_model(s, "credit"), later)
        assert status.overdue and status.days_overdue >= 9 and status.last_reviewed_at is None
        with pytest.raises(PermissionDenied, match="'approve'"):
            reviews.record_review(s, _user(s, "ops"), "credit", "fine")
        with pytest.raises(InvalidInput, match="needs --notes"):
            reviews.record_review(s, _user(s, "risk"), "credit", "  ")
        with pytest.raises(NotFound, match="no model named 'nope'"):
            reviews.record_review(s, _user(s, "risk"), "nope", "fine")
        done = reviews.record_review(s, _user(s, "risk"), "credit", "validated", now=later)
    assert done.next_due_at == later + dt.timedelta(days=90) and done.version is None
    with session_scope(db_url) as s:
        status = reviews.review_status(s, models.get_model(s, "credit"), later)
        assert not status.overdue and status.last_reviewer == "risk"
        assert [o.model for o in reviews.overdue(s, later + dt.timedelta(days=85))] == ["toy"]
    actor, action, details = _actions(db_url, "credit")[-1]
    assert (actor, action, details["review"], details["risk_tier"]) == (
        "risk", "model.reviewed", done.id, "high")


def test_an_overdue_review_raises_one_alert_resolved_once_reviewed(sqlite_url, tmp_path):
    _setup(sqlite_url)
    channels = alerts.Channels(tmp_path / "alerts.log")
    later = utcnow() + dt.timedelta(days=120)
    with session_scope(sqlite_url) as s:
        changes = review_alerts.check(s, channels, later)
    assert [(a.model_name, a.kind, a.rule, a.severity) for a in changes.raised] == [
        ("credit", "review", "review_overdue", "critical")]
    assert "periodic review overdue" in changes.raised[0].message
    with session_scope(sqlite_url) as s:
        assert review_alerts.check(s, channels, later).raised == []  # deduplicated
        reviews.record_review(s, _user(s, "risk"), "credit", "validated", now=later)
    with session_scope(sqlite_url) as s:
        changes = review_alerts.check(s, channels, later)
        assert [a.model_name for a in changes.resolved] == ["credit"]
        (alert,) = alerts.list_alerts(s, status="all")
        assert alert.status == "resolved" and alert.resolution.startswith("reviewed")


def test_the_monitor_pass_checks_reviews_with_nothing_deployed(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    cfg = Config(home=home, db_url=f"sqlite:///{home / 'store.db'}", artifacts=home / "art")
    migrate(cfg.db_url)
    _setup(cfg.db_url)
    assert service.run_once(cfg, now=utcnow() + dt.timedelta(days=200)) == []
    with session_scope(cfg.db_url) as s:
        assert sorted(a.model for a in alerts.list_alerts(s)) == ["credit", "toy"]
    assert (home / "alerts.log").read_text().count("review_overdue") == 2
