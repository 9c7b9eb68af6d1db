"""Four-eyes promotion (`appliance.governance.approvals`): the gate's floors and incumbent
tolerance, a request refused to a viewer, approval refused to its requester, and a failed gate
audited; on SQLite and PostgreSQL. Races, expiry and quorum: test_approvals_binding.py."""

from __future__ import annotations

import governance_world as gw
import pytest
from sqlalchemy import text

from appliance.errors import CheckFailed, ConflictError, PermissionDenied
from appliance.governance import approvals, audit
from appliance.governance.users import get_user
from appliance.registry import lineage, models
from appliance.store import session_scope


def test_gate_floors_and_incumbent_tolerance():
    assert approvals.gate({"accuracy": 0.9, "auc": 0.9}).passed
    assert not approvals.gate({"accuracy": 0.6, "auc": 0.9}).passed
    worse = approvals.gate({"accuracy": 0.85, "auc": 0.9}, {"accuracy": 0.9, "auc": 0.9})
    assert not worse.passed
    assert [c.name for c in worse.failed] == ["accuracy >= incumbent - 0.01"]
    assert approvals.gate({"accuracy": 0.895, "auc": 0.9}, {"accuracy": 0.9, "auc": 0.9}).passed


def test_four_eyes_promotion(db_url, tmp_path):
    gw.people(db_url)
    mv = gw.registered_version(db_url, tmp_path)
    passed = approvals.gate({"accuracy": 0.9, "auc": 0.9})
    with session_scope(db_url) as s:
        ops, viewer = get_user(s, "ops"), get_user(s, "viewer")
        with pytest.raises(PermissionDenied, match="viewer"):
            approvals.request_promotion(s, viewer, mv, "champion", passed)
        req = approvals.request_promotion(s, ops, mv, "champion", passed)
        with pytest.raises(ConflictError, match="already has pending"):
            approvals.request_promotion(s, ops, mv, "champion", passed)
    with session_scope(db_url) as s:
        with pytest.raises(PermissionDenied, match="operator"):
            approvals.approve(s, get_user(s, "ops2"), req.id)
        # An admin who requested may still not approve their own request.
        root = get_user(s, "root")
        own = approvals.request_promotion(s, root, mv, "challenger", passed)
        with pytest.raises(PermissionDenied, match="four-eyes"):
            approvals.approve(s, root, own.id)
        approvals.approve(s, get_user(s, "risk"), req.id, "ok")
    with session_scope(db_url) as s:
        assert models.resolve(s, "credit@champion").id == mv.id
        doc = lineage.lineage(s, "credit@champion").model_dump()
        assert doc["dataset"]["name"] == "loans" and doc["run"]["params"] == {"lr": 0.1}
        assert doc["run"]["seed"] == 3 and doc["code_version"]
        approved = [a for a in doc["approvals"] if a["status"] == "approved"]
        assert approved[0]["requested_by"] == "ops" and approved[0]["approved_by"] == "risk"
        with pytest.raises(ConflictError, match="already approved"):
            approvals.approve(s, get_user(s, "risk"), req.id)
        assert audit.verify(s).ok


def test_failed_gate_is_audited_and_refused(db_url, tmp_path):
    gw.people(db_url)
    mv = gw.registered_version(db_url, tmp_path)
    failing = approvals.gate({"accuracy": 0.1, "auc": 0.1})
    with session_scope(db_url) as s, pytest.raises(CheckFailed, match="failed the promotion gate"):
        approvals.request_promotion(s, get_user(s, "ops"), mv, "champion", failing)
    with session_scope(db_url) as s:
        actions = [r[0] for r in s.execute(text("SELECT action FROM auditevent")).all()]
        assert "model.gate.failed" in actions
