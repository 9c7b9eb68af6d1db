"""Review policies (`appliance.governance.reviews`): a model's tier and review interval, and
recorded reviews. The alert an overdue review raises: tests/monitor/test_review_alerts.py."""

from __future__ import annotations

import datetime as dt

import governance_world as gw
import pytest
from sqlmodel import select

from appliance.errors import InvalidInput, NotFound, PermissionDenied
from appliance.governance import reviews
from appliance.governance.users import get_user
from appliance.registry import models
from appliance.store import session_scope
from appliance.store.models import AuditEvent, utcnow


def _actions(url, model):
    with session_scope(url) as s:
        return [(e.actor, e.action, e.details) for e in s.exec(
            select(AuditEvent).where(AuditEvent.object_id == model).order_by(AuditEvent.id))]


def test_the_tier_sets_the_interval_until_an_approver_sets_the_models_own(db_url):
    gw.reviewed_models(db_url)
    with session_scope(db_url) as s:
        credit, toy = models.get_model(s, "credit"), models.get_model(s, "toy")
        assert (reviews.interval_days(credit), reviews.interval_days(toy)) == (90, 180)
        with pytest.raises(PermissionDenied, match="'approve'"):
            models.update_model(s, get_user(s, "ops"), "toy", review_interval_days=30)
        with pytest.raises(InvalidInput, match="from 1 to 3650"):
            models.update_model(s, get_user(s, "risk"), "toy", review_interval_days=0)
        models.update_model(s, get_user(s, "risk"), "toy", review_interval_days=30)
    with session_scope(db_url) as s:
        assert reviews.interval_days(models.get_model(s, "toy")) == 30
    assert _actions(db_url, "toy")[-1] == ("risk", "model.updated", {"review_interval_days": 30})
    assert _actions(db_url, "credit")[0][2]["risk_tier"] == "high"


def test_a_review_is_recorded_by_an_approver_audited_and_moves_the_due_date(db_url):
    gw.reviewed_models(db_url)
    later = utcnow() + dt.timedelta(days=100)
    with session_scope(db_url) as s:
        status = reviews.review_status(s, models.get_model(s, "credit"), later)
        assert status.overdue and status.days_overdue >= 9 and status.last_reviewed_at is None
        with pytest.raises(PermissionDenied, match="'approve'"):
            reviews.record_review(s, get_user(s, "ops"), "credit", "fine")
        with pytest.raises(InvalidInput, match="needs --notes"):
            reviews.record_review(s, get_user(s, "risk"), "credit", "  ")
        with pytest.raises(NotFound, match="no model named 'nope'"):
            reviews.record_review(s, get_user(s, "risk"), "nope", "fine")
        done = reviews.record_review(s, get_user(s, "risk"), "credit", "validated", now=later)
    assert done.next_due_at == later + dt.timedelta(days=90) and done.version is None
    with session_scope(db_url) as s:
        status = reviews.review_status(s, models.get_model(s, "credit"), later)
        assert not status.overdue and status.last_reviewer == "risk"
        assert [o.model for o in reviews.overdue(s, later + dt.timedelta(days=85))] == ["toy"]
    actor, action, details = _actions(db_url, "credit")[-1]
    assert (actor, action, details["review"], details["risk_tier"]) == (
        "risk", "model.reviewed", done.id, "high")
