"""The retrain loop's orchestrator, on the steps that need no Ray: who approves a promotion
request, and how a failing step ends (`appliance.pipelines.loop`). The steps that train and
change serving run in tests/e2e/test_closed_loop.py, on a real Ray."""

from __future__ import annotations

import dataclasses

import loop_world as lw
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from sqlmodel import select

from appliance.errors import PermissionDenied
from appliance.governance import approvals, audit
from appliance.governance.gate_checks import DEFAULT_CHECKS, GateChecks, Limit
from appliance.governance.users import create_user
from appliance.monitor import service
from appliance.monitor.policy_store import set_policy
from appliance.pipelines import loop
from appliance.registry.models import update_model
from appliance.store import dispose_all, session_scope
from appliance.store.models import (
    Alert,
    Approval,
    AuditEvent,
    ModelVersion,
    PredictionWindow,
    RetrainRequest,
    Run,
)

GATE = {"passed": True, "checks": [{"name": "accuracy >= 0.7", "kind": "threshold",
                                    "measured": 0.9, "limit": 0.7, "passed": True}]}
VERDICT = {"status": "passed", "reason": "accuracy 0.90 vs champion 0.70"}


@pytest.fixture
def world(tmp_path):
    w = lw.make_world(tmp_path)
    yield w
    dispose_all()


def _request(w: lw.World, state: str) -> tuple[int, object]:
    v2 = lw.add_version(w, shift=1.0)
    with session_scope(w.cfg.db_url) as s:
        svc = create_user(s, "svc", "operator", actor="admin")
        request = RetrainRequest(
            model_name=w.model, deployment=w.deployment, active_key=w.model, trigger="drift",
            since_window=1, state=state, champion_version_id=w.version.id, version_id=v2.id,
            gate=GATE, canary={"mode": "split", "share": 0.1, "verdict": VERDICT},
            created_by="svc")
        s.add(request)
        s.flush()
        return request.id, svc


def test_a_low_risk_models_policy_approves_and_the_audit_names_it(world):
    rid, svc = _request(world, "requesting_promotion")
    with session_scope(world.cfg.db_url) as s:
        update_model(s, world.risk, world.model, risk_tier="low")
        set_policy(s, world.ops, world.model, {"auto_promote": True})
    # Two steps: the request is filed and approved by the policy; then the loop sees it
    # approved (promoting needs Ray, so the budget stops there).
    steps = loop.advance(world.cfg, svc, budget=2)
    assert [(s.before, s.after) for s in steps] == [
        ("requesting_promotion", "awaiting_approval"), ("awaiting_approval", "promoting")]
    with session_scope(world.cfg.db_url) as s:
        (approval,) = s.exec(select(Approval).where(Approval.requested_by == "svc")).all()
        assert approval.decided_by == f"policy:{world.model}" and approval.status == "approved"
        assert approval.gate["canary"] == VERDICT and approval.gate["passed"]
        event = s.exec(select(AuditEvent).where(
            AuditEvent.action == "model.promotion.approved",
            AuditEvent.object_id == str(approval.id))).one()
        assert event.actor == f"policy:{world.model}" and event.details["risk_tier"] == "low"
        assert s.get(RetrainRequest, rid).state == "promoting"
        assert audit.verify(s).ok


def test_a_policy_default_never_promotes_a_model_that_is_not_low_risk(world):
    rid, svc = _request(world, "requesting_promotion")
    # auto_promote from the configuration reaches every model, but only low-risk ones use it.
    cfg = dataclasses.replace(world.cfg, policy={"auto_promote": True})
    steps = loop.advance(cfg, svc, budget=3)
    assert [s.after for s in steps] == ["awaiting_approval", "awaiting_approval"]
    with session_scope(world.cfg.db_url) as s:
        (approval,) = s.exec(select(Approval).where(Approval.requested_by == "svc")).all()
        assert approval.status == "pending"
    # The request's own account may not decide it: four eyes.
    with session_scope(world.cfg.db_url) as s, pytest.raises(PermissionDenied):
        approvals.approve(s, svc, approval.id)


def _labelled_windows(world: lw.World) -> None:
    """Serve and label enough for a retraining set: closed windows, labels applied."""
    with session_scope(world.cfg.db_url) as s:
        set_policy(s, world.ops, world.model, {"min_labelled_rows": 1})
    truth = world.serve("w1", 3, 100, seed=1)
    cfg = dataclasses.replace(world.cfg, policy={"window_rows": 200})
    service.run_once(cfg)
    world.label(truth)
    service.run_once(cfg)


def test_a_step_that_keeps_failing_fails_the_request_and_tells_the_owner(world):
    rid, svc = _request(world, "waiting_for_labels")
    with session_scope(world.cfg.db_url) as s:
        # A champion that no longer exists: building the set is bad input, not retried.
        s.get(RetrainRequest, rid).champion_version_id = 999
    _labelled_windows(world)
    steps = loop.advance(world.cfg, svc)
    assert steps[-1].after == "failed"
    with session_scope(world.cfg.db_url) as s:
        request = s.get(RetrainRequest, rid)
        assert request.state == "failed" and request.active_key is None
        assert "no champion version" in request.outcome
        notice = s.exec(select(Alert).where(Alert.kind == "retrain")).one()
        assert notice.owner == "ops" and f"#{rid}" in notice.message


def test_a_window_changed_on_disk_stops_the_retraining_set_and_raises_a_critical_alert(world):
    rid, svc = _request(world, "waiting_for_labels")
    _labelled_windows(world)
    with session_scope(world.cfg.db_url) as s:
        window = s.exec(select(PredictionWindow).order_by(PredictionWindow.index)).first()
    # Rewritten by someone: the same rows, labels flipped, a valid Parquet file.
    table = pq.read_table(window.path)
    pq.write_table(table.set_column(table.schema.get_field_index("prediction"), "prediction",
                                    pc.subtract(1, table.column("prediction"))), window.path)
    loop.advance(world.cfg, svc)
    with session_scope(world.cfg.db_url) as s:
        request = s.get(RetrainRequest, rid)
        assert request.dataset_id is None  # no retraining set from a tampered window
        alert = s.exec(select(Alert).where(Alert.kind == "integrity")).one()
        assert alert.severity == "critical" and window.path.rsplit("/", 1)[1] in alert.message


@pytest.mark.parametrize("stored", [
    GateChecks(thresholds={"auc": Limit(min=0.8)}, tolerance={"auc": 0.02},
               functions=["my_checks:fair"]).to_dict(),
    None,  # a champion registered before versions stored their gate
])
def test_the_challenger_is_trained_with_the_gate_the_champion_stored(world, stored):
    rid, svc = _request(world, "training")
    with session_scope(world.cfg.db_url) as s:
        champion = s.get(ModelVersion, world.version.id)
        champion.gate_checks = stored
        s.add(champion)
        s.get(RetrainRequest, rid).dataset_id = s.get(Run, champion.run_id).dataset_id
    driver = loop._Driver(world.cfg, svc, rid)
    with session_scope(world.cfg.db_url) as s:
        spec = driver._spec(s, *driver._load(s))
    # The challenger registers with spec.gate (training.resume), and is judged by it.
    assert spec.gate == (stored or DEFAULT_CHECKS.to_dict())
