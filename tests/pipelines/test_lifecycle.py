"""`appliance.pipelines.lifecycle.down` where no local Ray head is recorded: it signals
nothing, closes the ledger's active deployments and says so in one audit event; it refuses a
principal that may not operate and a configured cluster before it changes anything. A real
detached head stopped with everything on it: tests/cli/test_down.py.
"""

from __future__ import annotations

import dataclasses

import governance_world as gw
import loop_world as lw
import pytest
from sqlmodel import select

from appliance.errors import ConflictError, PermissionDenied
from appliance.governance.users import get_user
from appliance.pipelines import lifecycle
from appliance.registry import models
from appliance.store import session_scope
from appliance.store.models import AuditEvent, Deployment, Run
from cluster import head


@pytest.fixture
def world(sqlite_url, tmp_path):
    """credit v1 served as primary with v2 as its canary, and credit-eu (v1) stopped already;
    no local head recorded under the appliance's home."""
    gw.people(sqlite_url)
    v1 = gw.registered_version(sqlite_url, tmp_path)
    with session_scope(sqlite_url) as s:
        v2 = models.register_version(s, run=s.get(Run, v1.run_id), digest="e" * 64,
                                     profile_digest=None, metrics={}, features=["x"],
                                     categorical=[], label="y", actor="ops")
        for name, version, role, status in [("credit", v1, "primary", "active"),
                                            ("credit-eu", v1, "primary", "stopped"),
                                            ("credit", v2, "canary", "active")]:
            s.add(Deployment(name=name, model_name="credit", version_id=version.id, role=role,
                             status=status, url="http://127.0.0.1:1", created_by="ops"))
    cfg = lw.config(tmp_path / "home", db_url=sqlite_url)
    assert head.recorded_address(cfg.home) is None
    return cfg


def _ledger(url) -> list[tuple[str, str, str, bool]]:
    with session_scope(url) as s:
        return [(d.name, d.role, d.status, d.stopped_at is not None)
                for d in s.exec(select(Deployment).order_by(Deployment.id)).all()]


def _down_events(url) -> list[AuditEvent]:
    with session_scope(url) as s:
        return list(s.exec(select(AuditEvent).where(AuditEvent.action == "appliance.down")))


def _user(url, name):
    with session_scope(url) as s:
        return get_user(s, name)


def test_down_without_a_head_closes_the_ledger_once(world):
    url = world.db_url
    done = lifecycle.down(world, _user(url, "ops"))
    assert done == lifecycle.DownPublic(
        address=None, serve_shutdown=False, serve_error=None, pids=[], killed=[],
        deployments_closed=[
            lifecycle.ClosedDeploymentPublic(name="credit", version=1, role="primary"),
            lifecycle.ClosedDeploymentPublic(name="credit", version=2, role="canary")])
    assert _ledger(url) == [("credit", "primary", "stopped", True),
                            ("credit-eu", "primary", "stopped", False),
                            ("credit", "canary", "stopped", True)]
    (event,) = _down_events(url)
    assert (event.actor, event.object_type, event.object_id) == ("ops", "cluster", "local")
    assert event.details == {"pids": 0, "killed": [], "serve_shutdown": False,
                             "deployments": ["credit:1 (primary)", "credit:2 (canary)"]}
    # Idempotent: nothing left to stop or close, so nothing is recorded.
    again = lifecycle.down(world, _user(url, "root"))
    assert again.deployments_closed == [] and again.address is None
    assert len(_down_events(url)) == 1


@pytest.mark.parametrize("who", ["viewer", "risk"])
def test_down_refuses_a_principal_that_may_not_operate(world, who):
    with pytest.raises(PermissionDenied, match="'operate' needs one of"):
        lifecycle.down(world, _user(world.db_url, who))
    assert [status for _, _, status, _ in _ledger(world.db_url)] == [
        "active", "stopped", "active"]
    assert _down_events(world.db_url) == []


def test_down_never_stops_a_configured_cluster(world):
    joined = dataclasses.replace(world, ray_address="10.0.0.1:6379")
    with pytest.raises(ConflictError, match="only stops the\\s+local head") as refused:
        lifecycle.down(joined, _user(world.db_url, "ops"))
    assert "'10.0.0.1:6379'" in str(refused.value)
    assert [status for _, _, status, _ in _ledger(world.db_url)] == [
        "active", "stopped", "active"]
    assert _down_events(world.db_url) == []
