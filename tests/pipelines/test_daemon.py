"""The monitor service (`appliance.pipelines.daemon`): one round, and the long-running service
with its two threads, on a real store and the tests' own world (`loop_world`), without Ray.

Only acting on a retrain request joins Ray; these tests keep to what the service decides
before that: who may retrain, whether there is work, what a round reports, how the service
paces its passes, survives a failing one and stops. The loop's steps on a real Ray run in
tests/e2e/test_closed_loop.py.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time

import loop_world as lw
import pytest
from sqlmodel import select

from appliance.errors import NotFound
from appliance.governance.users import create_user
from appliance.pipelines import daemon
from appliance.store import dispose_all, session_scope
from appliance.store.models import AuditEvent, RetrainRequest, User

ROLES = [("admin", True), ("operator", True), ("approver", False), ("viewer", False)]


@pytest.fixture
def world(tmp_path):
    """The loop world, its window policy 100 rows, and 4 requests of 50 rows logged."""
    w = lw.make_world(tmp_path, policy={"window_rows": 100})
    w.serve("a", requests=4, rows_per_request=50, seed=1)
    yield w
    dispose_all()


@pytest.fixture
def empty(tmp_path, sqlite_url):
    """A migrated store with no deployment: the configuration, an operator and a viewer."""
    cfg = lw.config(tmp_path, db_url=sqlite_url)
    with session_scope(sqlite_url) as s:
        ops = create_user(s, "ops", "operator", actor="ops")
        viewer = create_user(s, "val", "viewer", actor="ops")
    return cfg, ops, viewer


def _user(role: str) -> User:
    return User(name=f"a-{role}", role=role)


@pytest.mark.parametrize(("role", "may"), ROLES)
def test_only_a_principal_that_may_operate_retrains(role, may):
    assert daemon.may_retrain(_user(role)) is may


def test_a_round_on_a_store_with_nothing_deployed_does_nothing(empty):
    cfg, ops, _ = empty
    r = daemon.run_round(cfg, ops)
    assert r == daemon.Round(passes=[], steps=[])
    # What `appliance monitor --once --json` prints.
    assert dataclasses.asdict(r) == {"passes": [], "steps": []}


def test_a_round_closes_the_windows_of_each_deployment_it_watches(world):
    eu = lw.add_deployment(world, "scorer-eu")
    eu.serve("b", requests=2, rows_per_request=50, seed=2)
    r = daemon.run_round(world.cfg, world.ops)
    assert r.steps == []
    by_name = {p.deployment: p for p in r.passes}
    assert set(by_name) == {"scorer", "scorer-eu"}
    assert [(w.window, w.rows) for w in by_name["scorer"].closed] == [(1, 100), (2, 100)]
    assert [(w.window, w.rows) for w in by_name["scorer-eu"].closed] == [(1, 100)]
    assert all(p.model == "scorer" and p.error is None for p in r.passes)
    # Only the one deployment asked for; nothing left to close in the other.
    eu.serve("c", requests=2, rows_per_request=50, seed=3)
    world.serve("d", requests=2, rows_per_request=50, seed=4)
    (only,) = daemon.run_round(world.cfg, world.ops, deployment="scorer-eu").passes
    assert only.deployment == "scorer-eu" and [w.window for w in only.closed] == [2]


def test_a_deployment_never_recorded_is_refused_before_anything_runs(world):
    # A typo would watch nothing, for ever: both the round and the service refuse it.
    with pytest.raises(NotFound, match="no deployment named 'scorer-us'; deployments: scorer"):
        daemon.run_round(world.cfg, world.ops, deployment="scorer-us")
    with pytest.raises(NotFound, match="no deployment named 'scorer-us'"):
        daemon.run_forever(world.cfg, world.ops, interval=0.1, deployment="scorer-us",
                           stop=threading.Event())
    # Nothing ran: the logged requests still wait for their windows.
    (only,) = daemon.run_round(world.cfg, world.ops, deployment="scorer").passes
    assert [(w.window, w.rows) for w in only.closed] == [(1, 100), (2, 100)]


def test_a_store_with_no_deployment_names_none(empty):
    cfg, ops, _ = empty
    with pytest.raises(NotFound, match="no deployment named 'scorer'; deployments: none yet"):
        daemon.run_round(cfg, ops, deployment="scorer")


def test_a_principal_that_may_not_operate_leaves_retrain_requests_alone(world):
    with session_scope(world.cfg.db_url) as s:
        viewer = create_user(s, "val", "viewer", actor="admin")
        s.add(RetrainRequest(model_name=world.model, deployment=world.deployment,
                             active_key=world.model, trigger="drift", since_window=1,
                             champion_version_id=world.version.id,
                             created_by="ops"))
    r = daemon.run_round(world.cfg, viewer)
    assert r.steps == [] and [p.deployment for p in r.passes] == ["scorer"]
    with session_scope(world.cfg.db_url) as s:
        (request,) = s.exec(select(RetrainRequest)).all()
        assert request.state == "waiting_for_labels" and request.finished_at is None
        moved = s.exec(select(AuditEvent).where(AuditEvent.action.startswith("retrain."))).all()
        assert moved == []


def _serve(cfg, user, *, interval: float, rounds: int) -> tuple[list, list, threading.Thread]:
    """Run the service in a thread of its own (so it installs no signal handlers) until it has
    made `rounds` rounds; return (each round, with the seconds from the start to its report
    and the threads alive then), the retrain threads left, and the service's thread."""
    stop = threading.Event()
    started = time.monotonic()
    seen: list[tuple[float, daemon.Round, set[str]]] = []

    def on_round(r: daemon.Round) -> None:
        seen.append((time.monotonic() - started, r, {t.name for t in threading.enumerate()}))
        if len(seen) >= rounds:
            stop.set()

    service = threading.Thread(target=daemon.run_forever, args=(cfg, user),
                               kwargs={"interval": interval, "on_round": on_round,
                                       "stop": stop}, daemon=True)
    service.start()
    service.join(timeout=30)
    return seen, [t for t in threading.enumerate() if t.name == "retrain-loop"], service


def test_the_service_paces_its_passes_and_retrains_beside_them(world):
    seen, loops_left, service = _serve(world.cfg, world.ops, interval=0.3, rounds=3)
    assert not service.is_alive() and len(seen) == 3
    # The retrain loop runs on a thread of its own while the passes go on; it ends with them.
    assert all("retrain-loop" in threads for _, _, threads in seen)
    assert loops_left == []
    first = seen[0][1]
    assert [w.window for w in first.passes[0].closed] == [1, 2] and first.steps == []
    assert all(r.passes[0].closed == [] for _, r, _ in seen[1:])
    # A pass starts `interval` after the last one started: the third no sooner than 0.6 s.
    assert seen[2][0] >= 0.6, [t for t, _, _ in seen]


def test_a_service_that_may_not_operate_only_monitors(empty, caplog):
    cfg, _, viewer = empty
    with caplog.at_level(logging.WARNING, logger="appliance.monitor"):
        seen, _, service = _serve(cfg, viewer, interval=0.05, rounds=2)
    assert not service.is_alive() and len(seen) == 2
    assert not any("retrain-loop" in threads for _, _, threads in seen)
    assert "user 'val' may not operate: monitoring only, no retraining" in caplog.text


def test_a_failing_pass_does_not_end_the_service(tmp_path, caplog):
    # A store without tables: every pass fails, and the service goes on to the next.
    cfg = lw.config(tmp_path)
    with caplog.at_level(logging.ERROR, logger="appliance.monitor"):
        seen, _, service = _serve(cfg, _user("viewer"), interval=0.05, rounds=2)
    dispose_all()
    assert not service.is_alive()
    assert [r for _, r, _ in seen] == [daemon.Round([], [])] * 2
    assert caplog.text.count("monitor pass failed") >= 2
