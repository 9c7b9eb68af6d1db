"""Overdue periodic reviews as alerts (`appliance.monitor.review_alerts`): one alert per
overdue model, critical for a high-risk one, deduplicated, resolved once reviewed, and checked
by the monitor's pass even with nothing deployed."""

from __future__ import annotations

import datetime as dt

import governance_world as gw

from appliance.config import Config
from appliance.governance import reviews
from appliance.governance.users import get_user
from appliance.monitor import alerts, review_alerts, service
from appliance.store import migrate, session_scope
from appliance.store.models import utcnow


def test_an_overdue_review_raises_one_alert_resolved_once_reviewed(sqlite_url, tmp_path):
    gw.reviewed_models(sqlite_url)
    channels = alerts.Channels(tmp_path / "alerts.log")
    later = utcnow() + dt.timedelta(days=120)
    with session_scope(sqlite_url) as s:
        changes = review_alerts.check(s, channels, later)
    assert [(a.model_name, a.kind, a.rule, a.severity) for a in changes.raised] == [
        ("credit", "review", "review_overdue", "critical")]
    assert "periodic review overdue" in changes.raised[0].message
    with session_scope(sqlite_url) as s:
        assert review_alerts.check(s, channels, later).raised == []  # deduplicated
        reviews.record_review(s, get_user(s, "risk"), "credit", "validated", now=later)
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
    gw.reviewed_models(cfg.db_url)
    assert service.run_once(cfg, now=utcnow() + dt.timedelta(days=200)) == []
    with session_scope(cfg.db_url) as s:
        assert sorted(a.model for a in alerts.list_alerts(s)) == ["credit", "toy"]
    assert (home / "alerts.log").read_text().count("review_overdue") == 2
