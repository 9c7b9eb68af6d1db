"""`appliance audit verify | export | anchor` as a real subprocess: exit codes, stdout, stderr."""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import subprocess
import sys

import pytest


def _cli(args, env):
    return subprocess.run([sys.executable, "-m", "appliance.cli", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def _home(tmp_path_factory, name):
    home = tmp_path_factory.mktemp(name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    env["APPLIANCE_HOME"] = str(home)
    res = _cli(["init", "--json"], env)
    assert res.returncode == 0, res.stderr
    res = _cli(["users", "create", "bob", "--role", "viewer"], env)
    assert res.returncode == 0, res.stderr
    return home, env


@pytest.fixture(scope="module")
def appliance(tmp_path_factory):
    """An initialised appliance whose chain nobody touches."""
    return _home(tmp_path_factory, "audit-cli")


def _events(home) -> int:
    with sqlite3.connect(home / "appliance.db") as conn:
        return conn.execute("SELECT count(*) FROM auditevent").fetchone()[0]


def test_verify_an_intact_chain(appliance):
    home, env = appliance
    res = _cli(["audit", "verify"], env)
    assert res.returncode == 0, res.stderr
    assert res.stdout == ""
    n = _events(home)
    assert f"audit chain intact: {n} events" in res.stderr
    assert "checkpoint of" in res.stderr and f"({n} events)" in res.stderr
    assert (home / "audit.key").stat().st_mode & 0o777 == 0o600
    res = _cli(["audit", "verify", "--json"], env)
    doc = json.loads(res.stdout)
    assert res.returncode == 0 and doc["ok"] and doc["events"] == doc["checkpoint_events"] == n
    assert (home / "audit.key").read_text().strip() not in res.stdout + res.stderr


def test_export_jsonl(appliance):
    home, env = appliance
    res = _cli(["audit", "export", "--format", "jsonl"], env)
    assert res.returncode == 0, res.stderr
    docs = [json.loads(line) for line in res.stdout.splitlines()]
    assert [d["id"] for d in docs] == list(range(1, _events(home) + 1))
    assert {"id", "ts", "actor", "action", "object_type", "object_id", "details", "prev_hash",
            "hash", "key_id"} == set(docs[0])
    assert all(b["prev_hash"] == a["hash"] for a, b in zip(docs, docs[1:], strict=False))
    assert ("user.created", "bob") in [(d["action"], d["object_id"]) for d in docs]
    recent = _cli(["audit", "export", "--since", "1h"], env)
    assert recent.stdout == res.stdout
    future = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)).isoformat()
    res = _cli(["audit", "export", "--since", future], env)
    assert res.returncode == 0 and res.stdout == ""


@pytest.mark.parametrize(("args", "needle"), [
    (["--since", "yesterday"], "--since 'yesterday' is neither a duration"),
    (["--since", "2026-01-01T00:00:00"], "--since '2026-01-01T00:00:00' has no time zone"),
    (["--format", "csv"], "--format 'csv' is not supported"),
])
def test_export_bad_options(appliance, args, needle):
    res = _cli(["audit", "export", *args], appliance[1])
    assert res.returncode == 2
    assert res.stdout == ""
    assert len(res.stderr.strip().splitlines()) == 1 and needle in res.stderr, res.stderr


def test_anchor_a_keyed_chain_is_refused(appliance):
    res = _cli(["audit", "anchor"], appliance[1])
    assert res.returncode == 2
    assert "no unkeyed audit events to anchor" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_verify_names_the_first_bad_event(tmp_path_factory):
    home, env = _home(tmp_path_factory, "audit-cli-tampered")
    n = _events(home)
    with sqlite3.connect(home / "appliance.db") as conn:
        conn.execute("DELETE FROM auditevent WHERE id = :n", {"n": n})
    res = _cli(["audit", "verify"], env)
    assert res.returncode == 1
    assert res.stdout == ""
    (line,) = res.stderr.strip().splitlines()
    assert f"audit chain broken (at event {n})" in line and "last rows were deleted" in line
    res = _cli(["audit", "verify", "--json"], env)
    assert res.returncode == 1 and json.loads(res.stdout)["broken_at"] == n
    with sqlite3.connect(home / "appliance.db") as conn:
        conn.execute("UPDATE auditevent SET actor = 'mallory' WHERE id = 2")
    res = _cli(["audit", "verify"], env)
    assert res.returncode == 1 and "at event 2" in res.stderr and "HMAC" in res.stderr
    os.chmod(home / "audit.key", 0o640)
    res = _cli(["audit", "verify"], env)
    assert res.returncode == 2 and "has mode 0640" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
