"""The monthly audit report's facts, its sections, and the month it covers."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest
from report_world import build_world

from appliance.errors import InvalidInput
from appliance.reports import build_audit_report, build_model_card, parse_month, render
from appliance.store import session_scope
from appliance.store.models import utcnow

GOLDEN = Path(__file__).parent / "golden"


def _report(world, month=None):
    with session_scope(world.url) as s:
        return build_audit_report(s, month or world.month)


def test_report_covers_promotions_exceptions_alerts_access_chain_and_reviews(world):
    r = _report(world)
    assert [(p.model, p.version, p.requested_by, p.approved_by, p.required_approvals, p.status)
            for p in r.promotions] == [("credit", 1, "ops", ["risk", "risk2"], 2, "approved"),
                                       ("credit", 2, "root", ["risk", "risk2"], 2, "approved")]
    assert all(p.gate_passed and p.hours_to_decision is not None and p.hours_to_decision >= 0
               for p in r.promotions)
    assert [c.kind for c in r.promotions[0].gate_checks] == ["threshold", "segment"]
    (attempt,) = r.self_approval_attempts
    assert (attempt.actor, attempt.details["requested_by"]) == ("root", "root")
    assert "four-eyes" in attempt.details["reason"]
    (override,) = r.contract_overrides
    assert (override.dataset, override.version, override.accepted_by) == ("loans", 2, "ops")
    assert "retired upstream" in override.reason
    assert r.rollbacks == []
    assert (r.alert_summary.raised, r.alert_summary.acknowledged, r.alert_summary.resolved,
            r.alert_summary.still_open) == (2, 1, 1, 1)
    drift = r.alerts[0]
    assert drift.acknowledged_by == "ops" and drift.minutes_to_acknowledge >= 0
    assert r.alert_summary.median_minutes_to_acknowledge == drift.minutes_to_acknowledge
    access = [(e.action, e.object_id) for e in r.access_changes]
    assert ("user.created", "risk2") in access and ("token.issued", "ops") in access
    assert any(e.action == "model.updated" for e in r.governance_changes)
    assert r.audit_chain.ok and r.audit_chain.checkpoint_events is not None
    assert [v.model for v in r.reviews] == ["credit"]
    assert [(o.model, o.risk_tier) for o in r.overdue_reviews] == [("legacy", "medium")]


def test_another_month_is_empty_but_still_verifies_the_chain(world):
    start, _ = parse_month(world.month)
    earlier = (start - dt.timedelta(days=1)).strftime("%Y-%m")
    r = _report(world, earlier)
    assert r.promotions == [] and r.alerts == [] and r.access_changes == []
    assert r.audit_chain.ok


@pytest.mark.parametrize("month", ["2026-13", "26-01", "2026-1", "", "2026-00", "january"])
def test_a_bad_month_is_invalid_input(month):
    with pytest.raises(InvalidInput, match="must be YYYY-MM"):
        parse_month(month)


def test_a_future_month_is_refused(world):
    later = (utcnow() + dt.timedelta(days=62)).strftime("%Y-%m")
    with session_scope(world.url) as s, pytest.raises(InvalidInput, match="not started yet"):
        build_audit_report(s, later)


def test_months_end_at_the_next_months_start():
    assert parse_month("2026-12") == (dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc),
                                      dt.datetime(2027, 1, 1, tzinfo=dt.timezone.utc))


def test_report_structure_matches_the_golden_file_and_json_is_the_typed_record(world):
    r = _report(world)
    golden = (GOLDEN / "audit_report_sections.txt").read_text().splitlines()
    html, md = render(r, "html"), render(r, "md")
    assert [f"{i}: {t}" for i, t in
            re.findall(r'<section id="([^"]+)"><h2>([^<]+)</h2>', html)] == golden
    assert [f"{i}: {t}" for t, i in re.findall(r"^## (.+) \{#([^}]+)\}$", md, re.M)] == golden
    assert 'data-chart="bar"' in html
    doc = json.loads(render(r, "json"))
    assert sorted(doc) == sorted(type(r).model_fields)
    assert doc["audit_chain"]["ok"] is True


def test_reports_build_on_each_backend(db_url, tmp_path):
    world = build_world(db_url, tmp_path)
    with session_scope(db_url) as s:
        report = build_audit_report(s, world.month)
        card = build_model_card(s, "credit")
    assert len(report.promotions) == 2 and len(report.self_approval_attempts) == 1
    assert [w.window for w in card.windows] == [0, 1, 2, 3]
    assert card.windows[2].feature_drift == {"income": 0.31, "debt": 0.01, "region": 0.06}
