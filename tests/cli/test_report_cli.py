"""`appliance report model | audit` and `appliance review` as real subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from report_world import build_world

from appliance.config import Config
from appliance.governance import audit
from appliance.governance.users import issue_token
from appliance.store import dispose_all, migrate, session_scope


def _cli(args, env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "appliance.cli", *args], env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """An appliance home holding the reports' lived-in store, signed with its own audit key,
    and token files for an approver and an operator."""
    home = tmp_path_factory.mktemp("report-cli")
    cfg = Config(home=home, db_url=f"sqlite:///{home / 'appliance.db'}",
                 artifacts=home / "artifacts")
    migrate(cfg.db_url)
    with audit.configured(cfg):
        world = build_world(cfg.db_url, home)
        with session_scope(cfg.db_url) as s:
            for user in ("risk", "ops"):
                (home / f"{user}.token").write_text(issue_token(s, user, "cli", actor="root"))
    dispose_all()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("APPLIANCE_") and k != "RAY_ADDRESS"}
    env["APPLIANCE_HOME"] = str(home)
    return home, env, world.month


def test_report_model_writes_a_self_contained_card(home):
    path, env, _ = home
    out = path / "card.html"
    res = _cli(["report", "model", "credit", "--output", str(out),
                "--token-file", str(path / "ops.token")], env)
    assert res.returncode == 0, res.stderr
    assert res.stdout == "" and f"wrote {out}" in res.stderr
    html = out.read_text()
    assert html.startswith("<!DOCTYPE html>") and "Model card: credit v2" in html
    assert html.count("<svg") == 5  # metric bars, importance shift, accuracy, drift, map


def test_report_audit_json_is_the_typed_record(home):
    path, env, month = home
    res = _cli(["report", "audit", "--month", month, "--format", "json",
                "--token-file", str(path / "ops.token")], env)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["month"] == month and doc["audit_chain"]["ok"] is True
    assert [p["requested_by"] for p in doc["promotions"]] == ["ops", "root"]
    assert len(doc["self_approval_attempts"]) == 1


@pytest.mark.parametrize(("args", "message"), [
    (["report", "audit", "--month", "2026-13"], "error: month '2026-13' must be YYYY-MM"),
    (["report", "audit", "--month", "2026-01", "--format", "pdf"],
     "error: --format 'pdf' is not one of html, md, json"),
])
def test_bad_input_exits_2_with_one_stderr_line(home, args, message):
    _, env, _ = home
    res = _cli(args, env)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.count("\n") == 1 and res.stderr.startswith(message), res.stderr


def test_review_records_a_review(home):
    path, env, _ = home
    res = _cli(["review", "credit", "--notes", "quarterly check", "--json",
                "--token-file", str(path / "risk.token")], env)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert (doc["model"], doc["reviewer"], doc["notes"], doc["version"]) == (
        "credit", "risk", "quarterly check", 2)
