"""Serving actions (`appliance.pipelines.deployment`) on the decisions they take from the store
before Ray Serve is touched: who may act, what there is to deploy, undeploy or roll back, which
champion a rollback restores; and a rollback of a model that is not deployed, which moves the
alias and cancels the running retrain without Ray. Each refusal leaves the ledger and the audit
log as they were.

Serving itself (deploy, canary, promotion, rollback of a deployed model) runs on a real Ray
Serve in tests/e2e/test_closed_loop.py and tests/cluster/test_serve*.py.
"""

from __future__ import annotations

import subprocess
import sys

import governance_world as gw
import loop_world as lw
import pytest
from sqlmodel import select

from appliance.errors import ConflictError, NotFound, PermissionDenied
from appliance.governance import approvals
from appliance.governance.users import get_user
from appliance.pipelines import deployment
from appliance.registry import models
from appliance.serving import ServingOptions
from appliance.store import session_scope
from appliance.store.models import (
    Approval,
    AuditEvent,
    Deployment,
    RetrainRequest,
    Run,
)

PASSED = approvals.gate({"accuracy": 0.9, "auc": 0.9})


def _world(url, tmp_path, versions: int = 1):
    """The bank's people and `versions` versions of model "credit"; returns the config."""
    gw.people(url)
    first = gw.registered_version(url, tmp_path)
    with session_scope(url) as s:
        run = s.get(Run, first.run_id)
        for n in range(2, versions + 1):
            models.register_version(s, run=run, digest=f"{n}" * 64, profile_digest=None,
                                    metrics={"accuracy": 0.9}, features=["x"], categorical=[],
                                    label="y", actor="ops")
    return lw.config(tmp_path, db_url=url)


def _champion(url, version: int) -> None:
    """ops requests `credit:version` as champion (the gate passed), risk approves."""
    with session_scope(url) as s:
        mv = models.resolve(s, f"credit:{version}")
        approval = approvals.request_promotion(s, get_user(s, "ops"), mv, "champion", PASSED)
        approvals.approve(s, get_user(s, "risk"), approval.id)


def _user(url, name):
    with session_scope(url) as s:
        return get_user(s, name)


def _ledger_and_events(url) -> tuple[list, list]:
    with session_scope(url) as s:
        rows = [(d.name, d.role, d.status) for d in s.exec(select(Deployment)).all()]
        events = [e.action for e in s.exec(select(AuditEvent).order_by(AuditEvent.id)).all()]
    return rows, events


def _add_primary(url, version: int, *, status: str = "active", serving: dict | None = None):
    with session_scope(url) as s:
        mv = models.resolve(s, f"credit:{version}")
        s.add(Deployment(name="credit", model_name="credit", version_id=mv.id,
                         url="http://127.0.0.1:8000", status=status, serving=serving,
                         created_by="ops"))


def test_deploy_and_undeploy_refuse_before_serving(sqlite_url, tmp_path):
    cfg = _world(sqlite_url, tmp_path)
    viewer, ops = _user(sqlite_url, "viewer"), _user(sqlite_url, "ops")
    _add_primary(sqlite_url, 1, status="stopped")
    before = _ledger_and_events(sqlite_url)
    with pytest.raises(PermissionDenied, match="'operate' needs one of"):
        deployment.deploy(cfg, viewer, "credit")
    with pytest.raises(NotFound, match="ghost"):
        deployment.deploy(cfg, ops, "ghost")
    # Nothing was promoted yet, and no alias "staging" was ever set.
    with pytest.raises(NotFound, match="has no 'champion' alias"):
        deployment.deploy(cfg, ops, "credit")
    with pytest.raises(NotFound, match="has no 'staging' alias"):
        deployment.deploy(cfg, ops, "credit", alias="staging")
    with pytest.raises(PermissionDenied, match="'operate' needs one of"):
        deployment.undeploy(cfg, _user(sqlite_url, "risk"), "credit")
    # A deployment that stopped is not deployed.
    with pytest.raises(NotFound, match="model 'credit' is not deployed"):
        deployment.undeploy(cfg, ops, "credit")
    assert _ledger_and_events(sqlite_url) == before


def test_a_canary_refuses_before_serving(sqlite_url, tmp_path):
    cfg = _world(sqlite_url, tmp_path, versions=2)
    ops = _user(sqlite_url, "ops")
    before = _ledger_and_events(sqlite_url)
    with pytest.raises(PermissionDenied, match="'operate' needs one of"):
        deployment.deploy_canary(cfg, _user(sqlite_url, "viewer"), "credit", 2)
    with pytest.raises(PermissionDenied, match="'operate' needs one of"):
        deployment.remove_canary(cfg, _user(sqlite_url, "risk"), "credit")
    with pytest.raises(NotFound, match="has no version 9"):
        deployment.deploy_canary(cfg, ops, "credit", 9)
    with pytest.raises(NotFound, match="a canary needs a champion serving"):
        deployment.deploy_canary(cfg, ops, "credit", 2, mode="shadow")
    assert _ledger_and_events(sqlite_url) == before


# Deploys the champion, then version 2 as its canary, in a process of its own (no Ray yet),
# printing each refusal; then whether that process ever started or joined a Ray.
_DEPLOY_MISSING = """
import sys
from pathlib import Path
from appliance.config import Config
from appliance.errors import NotFound
from appliance.governance.users import get_user
from appliance.pipelines import deployment
from appliance.store import session_scope
home, url = Path(sys.argv[1]), sys.argv[2]
cfg = Config(home=home, db_url=url, artifacts=home / "art")
with session_scope(url) as s:
    ops = get_user(s, "ops")
for deploy in (lambda: deployment.deploy(cfg, ops, "credit"),
               lambda: deployment.deploy_canary(cfg, ops, "credit", 2)):
    try:
        deploy()
    except NotFound as exc:
        print(exc)
import ray
print("ray initialised:", ray.is_initialized())
"""


def test_a_missing_bundle_is_refused_before_ray_is_touched(sqlite_url, tmp_path):
    from cluster import head

    cfg = _world(sqlite_url, tmp_path, versions=2)  # version digests with no bytes stored
    _champion(sqlite_url, 1)
    _add_primary(sqlite_url, 1)
    before = _ledger_and_events(sqlite_url)
    recorded = head.address_file(cfg.home)
    try:
        res = subprocess.run([sys.executable, "-c", _DEPLOY_MISSING, str(cfg.home), sqlite_url],
                             capture_output=True, text=True, timeout=120)
        assert not recorded.exists(), "a Ray head was started for a bundle that is not there"
    finally:
        if recorded.exists():  # stop what a regression started, by its pids
            head.terminate(head.head_processes(recorded.read_text().strip()), grace_s=5.0)
    where = f"is not in the store at {str(cfg.artifacts)!r}"
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [
        f"model bundle credit:1 (artifact {'d' * 12}) {where}",
        f"model bundle credit:2 (artifact {'2' * 12}) {where}",
        "ray initialised: False",
    ]
    assert _ledger_and_events(sqlite_url) == before


def test_rollback_refusals(sqlite_url, tmp_path):
    cfg = _world(sqlite_url, tmp_path, versions=3)
    risk = _user(sqlite_url, "risk")
    with pytest.raises(PermissionDenied, match="'approve' needs one of"):
        deployment.rollback(cfg, _user(sqlite_url, "ops"), "credit")
    with pytest.raises(NotFound, match="ghost"):
        deployment.rollback(cfg, risk, "ghost")
    with pytest.raises(NotFound, match="has no 'champion' alias"):
        deployment.rollback(cfg, risk, "credit")
    _champion(sqlite_url, 1)
    with pytest.raises(NotFound, match="model 'credit' has no earlier champion"):
        deployment.rollback(cfg, risk, "credit")
    _champion(sqlite_url, 2)
    before = _ledger_and_events(sqlite_url)
    with pytest.raises(NotFound, match="credit:3 never held 'champion'; promote it instead"):
        deployment.rollback(cfg, risk, "credit", to_version=3)
    with pytest.raises(ConflictError, match="credit:2 is already the champion"):
        deployment.rollback(cfg, risk, "credit", to_version=2)
    with pytest.raises(NotFound, match="has no version 7"):
        deployment.rollback(cfg, risk, "credit", to_version=7)
    assert _ledger_and_events(sqlite_url) == before


def _champion_version(url) -> int:
    with session_scope(url) as s:
        return models.resolve(s, "credit@champion").version


def test_rollback_restores_the_champion_before_this_one(db_url, tmp_path):
    cfg = _world(db_url, tmp_path, versions=3)
    for version in (1, 2, 3):
        _champion(db_url, version)
    risk = _user(db_url, "risk")
    done = deployment.rollback(cfg, risk, "credit")
    # Not deployed: serving is left alone, only the alias moves back.
    assert (done.from_version, done.to_version) == (3, 2)
    assert done.deployment is None and not done.canary_removed and done.retrain_cancelled is None
    assert done.public() == deployment.RollbackPublic(
        model="credit", from_version=3, to_version=2, canary_removed=False,
        retrain_cancelled=None)
    assert _champion_version(db_url) == 2
    with session_scope(db_url) as s:
        event = s.exec(select(AuditEvent).where(AuditEvent.action == "model.rolled_back")).one()
        assert (event.actor, event.object_id) == ("risk", "credit")
        assert event.details == {"from": 3, "to": 2, "retrain_cancelled": None,
                                 "canary_removed": False}
        # The alias points at v2 again under the approval that first made it champion.
        moved = s.exec(select(AuditEvent).where(AuditEvent.action == "model.alias.moved")
                       .order_by(AuditEvent.id.desc())).first()
        v2 = models.resolve(s, "credit:2")
        (approved,) = s.exec(select(Approval).where(Approval.version_id == v2.id)).all()
        assert moved.details == {"alias": "champion", "from": 3, "to": 2,
                                 "approval": approved.id}
    assert _ledger_and_events(db_url)[0] == []
    # The champion before v2 was v3, most recently approved: a second rollback undoes the first.
    assert deployment.rollback(cfg, risk, "credit").to_version == 3
    # Any version that once held the alias may be named.
    assert deployment.rollback(cfg, risk, "credit", to_version=1).to_version == 1
    assert _champion_version(db_url) == 1


def test_rollback_cancels_the_running_retrain(sqlite_url, tmp_path):
    cfg = _world(sqlite_url, tmp_path, versions=2)
    _champion(sqlite_url, 1)
    _champion(sqlite_url, 2)
    with session_scope(sqlite_url) as s:
        champion = models.resolve(s, "credit:2")
        request = RetrainRequest(model_name="credit", deployment="credit", active_key="credit",
                                 trigger="drift", since_window=1, state="training",
                                 champion_version_id=champion.id, created_by="ops")
        s.add(request)
        s.flush()
        rid = request.id
    done = deployment.rollback(cfg, _user(sqlite_url, "risk"), "credit")
    assert (done.to_version, done.retrain_cancelled) == (1, rid)
    with session_scope(sqlite_url) as s:
        request = s.get(RetrainRequest, rid)
        assert request.state == "cancelled" and request.active_key is None
        assert request.outcome == "rolled back to version 1"


def test_serving_options_follow_the_model_s_active_primary(sqlite_url, tmp_path):
    cfg = _world(sqlite_url, tmp_path)
    # Not deployed: the configuration's defaults.
    assert deployment.serving_options(cfg, "credit") == cfg.serving
    _add_primary(sqlite_url, 1, status="replaced", serving={"max_batch_size": 4})
    assert deployment.serving_options(cfg, "credit") == cfg.serving
    _add_primary(sqlite_url, 1, serving={"max_batch_size": 8, "replicas": 2})
    assert deployment.serving_options(cfg, "credit") == ServingOptions(max_batch_size=8,
                                                                       replicas=2)


def test_deployed_public_names_the_inference_endpoint(sqlite_url, tmp_path):
    _world(sqlite_url, tmp_path)
    _add_primary(sqlite_url, 1)
    with session_scope(sqlite_url) as s:
        row = s.exec(select(Deployment)).one()
    public = deployment.deployed_public(row)
    assert public.model_dump() == {
        "deployment": "credit", "model": "credit", "url": "http://127.0.0.1:8000",
        "infer": "http://127.0.0.1:8000/v2/models/credit/infer"}
