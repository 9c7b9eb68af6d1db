"""The retrain loop's orchestrator, on the steps that need no Ray: who approves a promotion
request, how a failing step ends, and how a retraining set's data contract holds a request
until it is accepted (`appliance.pipelines.loop`). The steps that train and
change serving run in tests/e2e/test_closed_loop.py, on a real Ray."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import loop_world as lw
import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from sqlmodel import select

from appliance.errors import PermissionDenied
from appliance.governance import approvals, audit
from appliance.governance.gate_checks import DEFAULT_CHECKS, GateChecks, Limit
from appliance.governance.users import create_user, issue_token
from appliance.monitor import canary, service
from appliance.monitor.policy_store import set_policy
from appliance.pipelines import loop
from appliance.registry import datasets
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


# The retraining set's data contract (appliance.registry.contract): drift only warns; a set
# with a blocking finding holds the request until someone accepts it, and is never a failure.


def _labelled_windows_with(world: lw.World, categories: np.ndarray, **drift: float) -> None:
    """Like `_labelled_windows`, with column c of every served row replaced."""
    with session_scope(world.cfg.db_url) as s:
        set_policy(s, world.ops, world.model, {"min_labelled_rows": 1})
    truth = []
    for r in range(3):
        rows = lw.draw(100, 1000 + r, **drift)
        rows["c"] = categories.astype(object)
        world.log(rows, f"w1-r{r:03d}")
        truth.append((f"w1-r{r:03d}", rows["y"]))
    cfg = dataclasses.replace(world.cfg, policy={"window_rows": 200})
    service.run_once(cfg)
    world.label(truth)
    service.run_once(cfg)


@pytest.fixture
def any_db_world(db_url, tmp_path):
    w = lw.make_world(tmp_path, db_url=db_url)
    yield w
    dispose_all()


def test_a_drifted_retraining_set_trains_with_its_warnings_on_the_request(any_db_world):
    world = any_db_world
    rid, svc = _request(world, "waiting_for_labels")
    i = np.arange(100)
    # Inputs far beyond the champion's range, and a new category "c" beside "a" and "b".
    _labelled_windows_with(world, np.where(i % 10 == 0, "c", np.where(i % 2, "a", "b")),
                           shift=8.0)
    # One step: the set is built and the request moves on (training needs Ray: not here).
    (step,) = loop.advance(world.cfg, svc, budget=1)
    assert (step.before, step.after) == ("waiting_for_labels", "training")
    assert "contract warnings: column 'x1': values span" in step.note
    with session_scope(world.cfg.db_url) as s:
        shown = canary.status(s, world.model).retrain
        assert (shown.id, shown.data_contract_status) == (rid, "passed")
        assert {"range", "category_new"} <= {v.check for v in shown.data_contract.warnings()}
        event = s.exec(select(AuditEvent).where(AuditEvent.action == "retrain.training")).one()
        assert event.details["contract"] == "passed"
        assert any("new categories ['c']" in w for w in event.details["warnings"])
        assert not s.exec(select(Alert).where(Alert.kind == "retrain")).all()


def _canary_status_table(world: lw.World) -> str:
    """`appliance canary status MODEL` as a viewer sees it (the real CLI, in a process of its
    own, so that its configuration leaves this one's audit key alone)."""
    with session_scope(world.cfg.db_url) as s:
        create_user(s, "val", "viewer", actor="admin")
        token = issue_token(s, "val", "cli", actor="admin")
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    env.update(APPLIANCE_HOME=str(world.cfg.home), APPLIANCE_DB_URL=world.cfg.db_url,
               APPLIANCE_ARTIFACTS=str(world.cfg.artifacts), APPLIANCE_TOKEN=token)
    res = subprocess.run([sys.executable, "-m", "appliance.cli", "canary", "status",
                          world.model], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_a_blocked_retraining_set_makes_the_request_wait_and_an_accept_resumes_it(
        any_db_world):
    world = any_db_world
    rid, svc = _request(world, "waiting_for_labels")
    # Category "a", half of what the champion learned from, never arrives.
    _labelled_windows_with(world, np.full(100, "b"))
    (step,) = loop.advance(world.cfg, svc, budget=1)
    assert (step.before, step.after) == ("waiting_for_labels", "waiting_for_data_accept")
    with session_scope(world.cfg.db_url) as s:
        request = s.get(RetrainRequest, rid)
        # Not a failed step: no attempt counted, the request keeps its model's slot.
        assert (request.attempts, request.error, request.active_key) == (0, None, world.model)
        shown = canary.status(s, world.model).retrain
        assert (shown.state, shown.dataset, shown.data_contract_status) == (
            "waiting_for_data_accept", "scorer-retrain:1", "failed")
        assert [v.check for v in shown.data_contract.blocking()] == ["category_vanished"]
        notice = s.exec(select(Alert).where(Alert.kind == "retrain")).one()
        assert notice.owner == "ops" and "failed its data contract against scorer-train:1" \
            in notice.message
        assert "appliance data accept scorer-retrain:1 --reason" in notice.message
    table = _canary_status_table(world)
    assert "waiting_for_data_accept" in table and "scorer-retrain:1" in table
    assert "category_vanished  block" in table and "categories ['a'] vanished" in table
    # It waits, however often the loop comes by, and tells the owner only once.
    for _ in range(2):
        (step,) = loop.advance(world.cfg, svc)
        assert step.after == "waiting_for_data_accept"
        assert "awaits 'appliance data accept'" in step.note
    with session_scope(world.cfg.db_url) as s:
        assert len(s.exec(select(Alert).where(Alert.kind == "retrain")).all()) == 1
        datasets.accept_contract(s, world.ops, "scorer-retrain:1", "region A paused in June")
    (step,) = loop.advance(world.cfg, svc, budget=1)
    assert (step.before, step.after) == ("waiting_for_data_accept", "training")
    assert step.note == "retraining set scorer-retrain:1 accepted by ops"
    with session_scope(world.cfg.db_url) as s:
        event = s.exec(select(AuditEvent).where(AuditEvent.action == "retrain.training")).one()
        assert (event.details["accepted_by"], event.details["reason"]) == (
            "ops", "region A paused in June")
        assert s.get(RetrainRequest, rid).attempts == 0
        assert audit.verify(s).ok


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
