"""Stored monitoring policies (`appliance.monitor.policy_store`): built-in defaults,
configuration defaults and per-model keys, validated, permissioned and audited. The pure core
(parsing and building a policy): test_policy.py."""

from __future__ import annotations

import pytest
from sqlmodel import select

from appliance.errors import ConflictError, InvalidInput, NotFound, PermissionDenied
from appliance.governance import audit
from appliance.governance.users import create_user
from appliance.monitor.policy import DEFAULTS, KEYS, Policy
from appliance.monitor.policy_store import effective, public, set_policy
from appliance.registry import models
from appliance.store import session_scope
from appliance.store.models import AuditEvent, MonitorPolicy, User

M = "scorer"


@pytest.fixture
def people(request) -> tuple[str, dict[str, User]]:
    """A store (the URL fixture the test asks for) with one model and a user of each role."""
    url = request.getfixturevalue("db_url" if "db_url" in request.fixturenames
                                  else "sqlite_url")
    with session_scope(url) as s:
        admin = create_user(s, "admin", "admin", actor="admin")
        users = {"admin": admin}
        for name, role in [("ops", "operator"), ("risk", "approver"), ("eve", "viewer")]:
            users[name] = create_user(s, name, role, actor="admin", team="risk-models")
        models.ensure_model(s, M, owner="ops", team="risk-models")
    return url, users


def test_a_model_without_settings_has_the_built_in_defaults(sqlite_url, people):
    url, _ = people
    assert Policy() == DEFAULTS
    assert (DEFAULTS.window_rows, DEFAULTS.window_seconds, DEFAULTS.min_drift_rows) == (
        2000, 3600.0, 500)
    assert (DEFAULTS.retrain, DEFAULTS.triggers, DEFAULTS.cooldown_seconds) == (
        True, ("drift", "accuracy"), 6 * 3600.0)
    assert (DEFAULTS.min_labelled_rows, DEFAULTS.max_rows, DEFAULTS.previous_share,
            DEFAULTS.holdout_share) == (2000, None, 0.0, 0.2)
    assert (DEFAULTS.canary_mode, DEFAULTS.canary_share, DEFAULTS.canary_metric,
            DEFAULTS.auto_promote) == ("split", 0.1, "accuracy", False)
    with session_scope(url) as s:
        got = effective(s, M)
        assert got.policy == DEFAULTS
        assert got.sources == dict.fromkeys(KEYS, "default")
        assert (got.updated_by, got.updated_at) == (None, None)
        # A model that does not exist gets the defaults too, unless it must exist.
        assert effective(s, "nobody").policy == DEFAULTS
        with pytest.raises(NotFound, match="nobody"):
            effective(s, "nobody", must_exist=True)


def test_model_keys_override_config_defaults_which_override_built_ins(db_url, people):
    url, users = people
    config = {"window_rows": 500, "cooldown_seconds": 60.0}
    with session_scope(url) as s:
        got = set_policy(s, users["ops"], M, {"window_rows": 300, "triggers": "drift,schedule",
                                              "schedule_seconds": 86400}, config_defaults=config)
        assert got.updated_by == "ops" and got.updated_at is not None
    with session_scope(url) as s:
        got = effective(s, M, config)
        assert (got.policy.window_rows, got.policy.cooldown_seconds,
                got.policy.window_seconds) == (300, 60.0, 3600.0)
        assert got.policy.triggers == ("drift", "schedule")
        assert got.policy.schedule_seconds == 86400.0
        assert {k: v for k, v in got.sources.items() if v != "default"} == {
            "window_rows": "model", "triggers": "model", "schedule_seconds": "model",
            "cooldown_seconds": "config"}
        # Only the changed keys are stored, so a later config default reaches the model.
        assert s.get(MonitorPolicy, M).settings == {
            "window_rows": 300, "triggers": ["drift", "schedule"], "schedule_seconds": 86400.0}
        assert effective(s, M, {"cooldown_seconds": 120}).policy.cooldown_seconds == 120
        doc = public(got)
        assert doc.policy["triggers"] == ["drift", "schedule"]
        assert doc.sources["window_rows"] == "model" and doc.updated_by == "ops"


def test_reset_returns_keys_to_the_config_or_built_in_default(db_url, people):
    url, users = people
    with session_scope(url) as s:
        set_policy(s, users["ops"], M, {"window_rows": 300, "max_rows": 10_000})
        got = set_policy(s, users["ops"], M, {}, reset=["window_rows"],
                         config_defaults={"window_rows": 800})
        assert (got.policy.window_rows, got.sources["window_rows"]) == (800, "config")
        assert (got.policy.max_rows, got.sources["max_rows"]) == (10_000, "model")
        got = set_policy(s, users["ops"], M, {}, reset=["max_rows", "window_rows"])
        assert got.policy == DEFAULTS
        assert s.get(MonitorPolicy, M).settings == {}


def test_none_unsets_an_optional_limit_but_not_both_window_limits(db_url, people):
    url, users = people
    with session_scope(url) as s:
        got = set_policy(s, users["ops"], M, {"max_rows": 5000, "schedule_seconds": 3600})
        got = set_policy(s, users["ops"], M, {"max_rows": None, "window_rows": None})
        assert (got.policy.max_rows, got.policy.window_rows, got.policy.window_seconds) == (
            None, None, 3600.0)
        assert got.sources["window_rows"] == "model"
    with pytest.raises(InvalidInput, match="window_rows, window_seconds or both"), \
            session_scope(url) as s:
        set_policy(s, users["ops"], M, {"window_seconds": None})
    with session_scope(url) as s:
        # The refusal changed nothing.
        assert effective(s, M).policy.window_seconds == 3600.0


@pytest.mark.parametrize(("changes", "reset", "error", "says"), [
    ({"windows": 5}, (), InvalidInput, "unknown policy key 'windows'"),
    ({}, ("windows",), InvalidInput, "unknown policy key(s) ['windows']"),
    ({}, (), InvalidInput, "nothing to change"),
    ({"retrain": "yes"}, (), InvalidInput, "'retrain' must be true or false"),
    ({"auto_promote": 1}, (), InvalidInput, "'auto_promote' must be true or false"),
    ({"triggers": ["drift", "weather"]}, (), InvalidInput, "['weather']"),
    ({"triggers": 3}, (), InvalidInput, "'triggers' must be a list"),
    ({"window_rows": 0}, (), InvalidInput, "'window_rows' must be an integer"),
    ({"window_rows": 1.5}, (), InvalidInput, "'window_rows' must be an integer"),
    ({"window_rows": True}, (), InvalidInput, "'window_rows'"),
    ({"window_seconds": 0}, (), InvalidInput, "'window_seconds' must be a number in (0"),
    ({"min_drift_rows": None}, (), InvalidInput, "'min_drift_rows' cannot be unset"),
    ({"cooldown_seconds": -1}, (), InvalidInput, "'cooldown_seconds'"),
    ({"previous_share": 1.5}, (), InvalidInput, "'previous_share'"),
    ({"holdout_share": 0.9}, (), InvalidInput, "'holdout_share'"),
    ({"canary_share": 0}, (), InvalidInput, "'canary_share'"),
    ({"canary_share": 0.6}, (), InvalidInput, "'canary_share'"),
    ({"canary_mode": "blue-green"}, (), InvalidInput, "'canary_mode' must be one of"),
    ({"canary_metric": "f1"}, (), InvalidInput, "'canary_metric' must be one of"),
    ({"canary_tolerance": float("nan")}, (), InvalidInput, "'canary_tolerance'"),
    ({"max_rows": "lots"}, (), InvalidInput, "'max_rows'"),
])
def test_set_policy_refuses_bad_keys_and_values(sqlite_url, people, changes, reset, error,
                                                says):
    url, users = people
    with pytest.raises(error) as info, session_scope(url) as s:
        set_policy(s, users["ops"], M, changes, reset=reset)
    assert says in str(info.value)
    with session_scope(url) as s:
        assert s.get(MonitorPolicy, M) is None


def test_set_policy_needs_an_existing_model_and_the_operate_permission(sqlite_url, people):
    url, users = people
    with session_scope(url) as s:
        with pytest.raises(NotFound, match="nobody"):
            set_policy(s, users["ops"], "nobody", {"window_rows": 10})
        for name in ("eve", "risk"):  # a viewer, and an approver (who approves, not operates)
            with pytest.raises(PermissionDenied, match="'operate'"):
                set_policy(s, users[name], M, {"window_rows": 10})
        assert set_policy(s, users["admin"], M, {"window_rows": 10}).policy.window_rows == 10


def test_auto_promote_is_refused_unless_the_models_risk_tier_is_low(db_url, people):
    url, users = people
    with pytest.raises(ConflictError, match="risk tier 'medium'"), session_scope(url) as s:
        set_policy(s, users["ops"], M, {"auto_promote": True})
    with session_scope(url) as s:
        # Lowering the tier is an approver's decision, not an operator's.
        with pytest.raises(PermissionDenied, match="'approve'"):
            models.update_model(s, users["ops"], M, risk_tier="low")
        models.update_model(s, users["risk"], M, risk_tier="low")
    with session_scope(url) as s:
        got = set_policy(s, users["ops"], M, {"auto_promote": True})
        assert got.policy.auto_promote is True
    with session_scope(url) as s:
        models.update_model(s, users["risk"], M, risk_tier="high")
    with pytest.raises(ConflictError, match="risk tier 'high'"), session_scope(url) as s:
        set_policy(s, users["ops"], M, {"auto_promote": True, "window_rows": 100})
    with session_scope(url) as s:
        # Turning it off is always allowed.
        assert set_policy(s, users["ops"], M, {}, reset=["auto_promote"]).policy.auto_promote \
            is False


def test_each_change_is_audited_with_what_was_set_and_reset(db_url, people):
    url, users = people
    with session_scope(url) as s:
        set_policy(s, users["ops"], M, {"triggers": ["accuracy"], "max_rows": None,
                                        "canary_share": 0.2})
        set_policy(s, users["ops"], M, {"window_rows": 100}, reset=["canary_share", "max_rows"])
    with session_scope(url) as s:
        events = s.exec(select(AuditEvent).where(AuditEvent.action == "policy.updated")
                        .order_by(AuditEvent.id)).all()
        assert [(e.actor, e.object_type, e.object_id) for e in events] == [
            ("ops", "model", M), ("ops", "model", M)]
        assert events[0].details == {"set": {"triggers": ["accuracy"], "max_rows": None,
                                             "canary_share": 0.2}, "reset": []}
        assert events[1].details == {"set": {"window_rows": 100},
                                     "reset": ["canary_share", "max_rows"]}
        assert audit.verify(s).ok
