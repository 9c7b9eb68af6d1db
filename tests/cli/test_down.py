"""`appliance down`: a real detached Ray head, a real Serve application, real signals.

The test process starts the head (`start_head`) but never joins it: what runs on the head is
deployed by a subprocess, and `down` and `status` run as the CLI does, in subprocesses. Every
process of the head found before `down` is killed by pid afterwards, whatever happened.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow as pa
import pytest
from sqlmodel import select

from appliance.artifacts import ArtifactStore
from appliance.config import load_config
from appliance.registry import datasets, models
from appliance.store import dispose_all, session_scope
from appliance.store.models import AuditEvent, Deployment
from cluster import head

# Joins the recorded head, as `appliance deploy` does, and runs an application whose replica
# leaves a file behind when Serve shuts it down gracefully (a signal would not run __del__).
_DEPLOY = textwrap.dedent("""
    import sys
    from pathlib import Path

    from cluster import runtime  # before Ray: it sets the auth mode
    from appliance.config import load_config
    from ray import serve

    @serve.deployment(ray_actor_options={"num_cpus": 0})
    class Probe:
        def __init__(self, marker):
            self.marker = marker

        def __call__(self):
            return "ok"

        def __del__(self):
            Path(self.marker).write_text("shut down gracefully")

    runtime.ensure_ray(load_config())
    serve.start(proxy_location="Disabled")
    serve.run(Probe.bind(sys.argv[1]), name="probe", route_prefix=None)
""")


def _run(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return _run([sys.executable, "-m", "appliance.cli", *args], env)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # Signalable but a zombie: exited, waiting for its new parent to reap it.
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.fixture
def env(tmp_path):
    """A fresh appliance (admin token saved) in a temporary APPLIANCE_HOME and HOME."""
    e = {k: v for k, v in os.environ.items()
         if not k.startswith("APPLIANCE_") and k != "RAY_ADDRESS"}
    (tmp_path / "home").mkdir()
    e.update(HOME=str(tmp_path / "home"), APPLIANCE_HOME=str(tmp_path / "appliance"))
    res = _cli(["init", "--json"], e)
    assert res.returncode == 0, res.stderr
    return e


def _viewer_token(env: dict[str, str]) -> str:
    res = _cli(["users", "create", "val", "--role", "viewer", "--json"], env)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)["token"]


def _active_deployment(env: dict[str, str]) -> int:
    """A ledger row claiming `credit:1` serves (the ledger is what `down` must close)."""
    cfg = load_config(env)
    with session_scope(cfg.db_url) as s:
        ds = datasets.add_table(s, ArtifactStore(cfg.artifacts), pa.table({"x": [1.0]}),
                                "loans", actor="admin")
        models.ensure_model(s, "credit", owner="admin", team="platform")
        run = models.start_run(s, model="credit", dataset=ds, spec={}, params={}, seed=1,
                               actor="admin")
        mv = models.register_version(s, run=run, digest="d" * 64, profile_digest=None,
                                     metrics={}, features=["x"], categorical=[], label="y",
                                     actor="admin")
        dep = Deployment(name="credit", model_name="credit", version_id=mv.id,
                         url="http://127.0.0.1:1", created_by="admin")
        s.add(dep)
        s.flush()
        dep_id = dep.id
    dispose_all()
    return dep_id


def _status(env: dict[str, str]) -> dict:
    res = _cli(["status", "--json"], env)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)["ray_head"]


def test_down_refuses_a_configured_cluster(env):
    res = _cli(["down"], {**env, "RAY_ADDRESS": "10.0.0.1:6379"})
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert "only stops the local head" in res.stderr and "10.0.0.1:6379" in res.stderr


def test_down_without_a_head_says_so(env):
    res = _cli(["down", "--json"], env)
    assert res.returncode == 0, res.stderr
    assert "nothing runs" in res.stderr
    assert json.loads(res.stdout)["address"] is None
    assert _status(env) == {"address": None, "running": False, "reachable": False,
                            "processes": 0, "applications": None, "error": None}


@pytest.mark.slow
def test_down_stops_the_head_and_everything_on_it(env, tmp_path):
    from cluster import runtime

    viewer = _viewer_token(env)
    dep_id = _active_deployment(env)
    marker = tmp_path / "replica-del"
    cfg = load_config(env)
    started = time.monotonic()
    address = runtime.start_head(cfg, num_cpus=1)
    found: list[head.Proc] = []
    try:
        deployed = _run([sys.executable, "-c", _DEPLOY, str(marker)], env, timeout=180)
        assert deployed.returncode == 0, deployed.stderr[-2000:]
        found = head.head_processes(address)
        names = {Path(p.argv[0]).name for p in found}
        assert {"gcs_server", "raylet"} <= names, names
        assert any(p.argv[0].startswith("ray::ServeReplica:probe") for p in found), names

        before = _status(env)
        assert before["address"] == address and before["running"] and before["reachable"]
        assert before["processes"] >= 2
        assert {"name": "probe", "status": "RUNNING"} in before["applications"]

        refused = _cli(["down"], {**env, "APPLIANCE_TOKEN": viewer})
        assert refused.returncode == 2, refused.stderr
        assert "'operate' needs one of" in refused.stderr
        assert all(head.alive(p) for p in found
                   if Path(p.argv[0]).name in ("gcs_server", "raylet"))

        res = _cli(["down", "--json"], env)
        assert res.returncode == 0, res.stderr
        doc = json.loads(res.stdout)
        assert doc["address"] == address and doc["serve_shutdown"] is True, doc
        assert doc["deployments_closed"] == [{"name": "credit", "version": 1,
                                              "role": "primary"}]
        assert "stopped the local Ray head" in res.stderr
        stayed = [p.pid for p in found if not _gone(p.pid)]
        assert not stayed, f"still running after down: {stayed}"
        assert marker.read_text() == "shut down gracefully"
        assert not head.address_file(cfg.home).exists()
        with session_scope(cfg.db_url) as s:
            row = s.get(Deployment, dep_id)
            assert row.status == "stopped" and row.stopped_at is not None
            event = s.exec(select(AuditEvent).where(AuditEvent.action == "appliance.down")).one()
            assert event.object_id == address and event.actor == "admin"
        dispose_all()

        after = _status(env)
        assert after["address"] is None and not after["running"]
        again = _cli(["down"], env)
        assert again.returncode == 0 and "nothing runs" in again.stderr, again.stderr
        print(f"test took {time.monotonic() - started:.1f}s; head had {len(found)} processes; "
              f"down: {res.stderr.strip()}")
    finally:
        # No stray Ray, whatever failed above: everything found, and anything found now.
        for p in found + head.head_processes(address):
            if head.alive(p):
                os.kill(p.pid, signal.SIGKILL)
        head.address_file(cfg.home).unlink(missing_ok=True)
