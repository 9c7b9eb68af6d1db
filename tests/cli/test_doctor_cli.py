"""`appliance doctor`: a real store, a real audit log, a real misconfigured Ray head."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from appliance.ports import free_port
from cluster import head


def _cli(args, env):
    return subprocess.run([sys.executable, "-m", "appliance.cli", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def _checks(res) -> dict[str, dict]:
    return {c["name"]: c for c in json.loads(res.stdout)["checks"]}


@pytest.fixture
def env(tmp_path):
    e = {k: v for k, v in os.environ.items() if not k.startswith(("APPLIANCE_", "RAY_ADDRESS"))}
    e["APPLIANCE_HOME"] = str(tmp_path / "home")
    return e


def test_a_fresh_node_is_told_to_init_and_a_set_up_one_passes(env):
    res = _cli(["doctor", "--json"], env)
    assert res.returncode == 1
    assert _checks(res)["store.reachable"]["status"] == "fail"
    assert "appliance init" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    # The check created nothing.
    assert not Path(env["APPLIANCE_HOME"], "appliance.db").exists()

    assert _cli(["init"], env).returncode == 0
    res = _cli(["doctor", "--json"], env)
    assert res.returncode == 0, res.stderr
    checks = _checks(res)
    assert json.loads(res.stdout)["ok"] is True
    assert {c["status"] for c in checks.values()} == {"ok"}
    assert {"ray.version", "ray.ports", "store.migrations", "artifacts.writable",
            "artifacts.disk", "audit.chain", "clock.skew", "gpu.nvml"} <= set(checks)


def test_an_unreachable_store_fails_without_showing_its_password(env):
    env["APPLIANCE_DB_URL"] = f"postgresql://app:s3cret-pw@127.0.0.1:{free_port()}/appliance"
    res = _cli(["doctor", "--json"], env)
    assert res.returncode == 1
    assert _checks(res)["store.reachable"]["status"] == "fail"
    assert "s3cret-pw" not in res.stdout + res.stderr


def test_a_broken_audit_chain_and_expected_gpus_without_nvml_are_findings(env):
    assert _cli(["init"], env).returncode == 0
    db = Path(env["APPLIANCE_HOME"], "appliance.db")
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE auditevent SET actor = 'mallory' WHERE id = 1")
    Path(env["APPLIANCE_HOME"], "appliance.toml").write_text("[serving]\nnum_gpus = 1\n")
    res = _cli(["doctor", "--json"], env)
    assert res.returncode == 1
    checks = _checks(res)
    assert checks["audit.chain"]["status"] == "fail" and "event 1" in checks["audit.chain"][
        "detail"]
    if not Path("/dev/nvidia0").exists():
        assert checks["gpu.nvml"]["status"] == "fail"


def test_a_head_started_without_the_appliance_s_settings_is_reported(env, tmp_path):
    """`ray start` as Ray does by default: auth off, the LAN address, a client server."""
    assert _cli(["init"], env).returncode == 0
    port = free_port()
    ray_tmp = tempfile.mkdtemp(prefix="rt-", dir="/tmp")
    ray_env = {**env, "RAY_AUTH_MODE": "disabled", "RAY_TMPDIR": ray_tmp,
               "HOME": str(tmp_path)}
    ray_env.pop("RAY_AUTH_TOKEN", None)
    ray_env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
    started = subprocess.run(
        [str(Path(sys.executable).with_name("ray")), "start", "--head", f"--port={port}",
         "--num-cpus=1", "--include-dashboard=false", "--disable-usage-stats",
         f"--ray-client-server-port={free_port()}"],
        env=ray_env, capture_output=True, text=True, timeout=180)
    address = f"127.0.0.1:{port}"
    try:
        assert started.returncode == 0, started.stderr[-2000:]
        Path(env["APPLIANCE_HOME"], head.ADDRESS_FILE).write_text(address)
        res = _cli(["doctor", "--json"], env)
        checks = _checks(res)
        assert res.returncode == 1
        assert checks["ray.auth"]["status"] == "fail"
        assert "disabled" in checks["ray.auth"]["detail"]
        # Listening beyond loopback where the machine has another interface.
        lan = [s for s in head.listening(p.pid for p in head.head_processes(address))
               if not s.loopback]
        assert (checks["ray.ports"]["status"] == "fail") == bool(lan)
    finally:
        head.terminate(head.head_processes(address), grace_s=5)
        subprocess.run(["rm", "-rf", ray_tmp], check=False)
