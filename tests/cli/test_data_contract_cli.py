"""The data contract through the real CLI: `data add` registers a violating version with a
warning and its report, `data show` tells its status, `train` refuses it (exit 1, one line
naming the violations), `data accept` lifts the block for an operator with a reason."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from appliance.governance.users import create_user, issue_token
from appliance.store import dispose_all, migrate, session_scope


def _csv(path, x_max: float) -> str:
    n = 400
    pacsv.write_csv(pa.table({
        "x": np.linspace(0.0, x_max, n),
        "c": np.array(["a", "b"])[np.arange(n) % 2],
        "label": np.arange(n, dtype=np.int64) % 2,
    }), path)
    return str(path)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    home = tmp_path_factory.mktemp("contract")
    url = f"sqlite:///{home / 'appliance.db'}"
    migrate(url)
    with session_scope(url) as s:
        for name, role in (("admin", "admin"), ("ops", "operator"), ("risk", "approver")):
            create_user(s, name, role, actor="admin")
            (home / f"{name}.token").write_text(issue_token(s, name, "cli", actor="admin"))
    dispose_all()
    (home / "spec.toml").write_text('model = "credit"\ndataset = "loans:2"\nlabel = "label"\n')
    return home


def _cli(home, who: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("APPLIANCE_") and k != "RAY_ADDRESS"}
    env["APPLIANCE_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "appliance.cli", *args, "--token-file", str(home / f"{who}.token")],
        env=env, capture_output=True, text=True, timeout=120)


def _one_line(res: subprocess.CompletedProcess) -> str:
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    return lines[0]


def test_a_violating_version_is_registered_blocked_and_accepted_with_who_and_why(home):
    res = _cli(home, "ops", "data", "add", _csv(home / "v1.csv", 100.0), "--name", "loans",
               "--json")
    assert res.returncode == 0 and res.stderr == "", res.stderr
    assert json.loads(res.stdout)["contract_status"] == "baseline"

    res = _cli(home, "ops", "data", "add", _csv(home / "v2.csv", 5000.0), "--name", "loans",
               "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert (doc["version"], doc["label"], doc["contract_status"]) == (2, "label", "failed")
    (violation,) = doc["contract"]["violations"]
    assert set(violation) == {"column", "check", "expected", "found", "message", "severity"}
    assert (violation["column"], violation["check"], violation["severity"]) == (
        "x", "range", "block")
    assert (doc["contract"]["purpose"], doc["contract"]["passed"]) == ("upload", False)
    assert violation["found"] == [0.0, 5000.0]
    warning = _one_line(res)
    assert warning.startswith("warning: dataset loans:2 fails its data contract against "
                              "loans:1 (1 violation(s)): column 'x': values span [0, 5000]")
    assert "appliance data accept loans:2 --reason" in warning

    res = _cli(home, "ops", "train", str(home / "spec.toml"))
    assert res.returncode == 1, (res.stdout, res.stderr)
    line = _one_line(res)
    assert line.startswith("error: dataset loans:2 failed its data contract against loans:1")
    assert "column 'x': values span [0, 5000]" in line

    for who, exit_code in (("risk", 2), ("ops", 2)):
        res = _cli(home, who, "data", "accept", "loans:2", "--reason", "" if who == "ops"
                   else "fine")
        assert res.returncode == exit_code
        assert ("--reason must say why" if who == "ops" else "'operate' needs one of") \
            in _one_line(res)
    res = _cli(home, "ops", "data", "accept", "loans:2", "--reason", "the new plant reads to 5k",
               "--json")
    assert res.returncode == 0, res.stderr
    res = _cli(home, "risk", "data", "show", "loans:2", "--json")
    doc = json.loads(res.stdout)
    assert (doc["contract_status"], doc["contract_accepted_by"],
            doc["contract_accepted_reason"]) == ("accepted", "ops", "the new plant reads to 5k")
    assert doc["contract"]["baseline"] == "loans:1"
    assert doc["contract"]["violations"][0]["check"] == "range"

    res = _cli(home, "ops", "data", "accept", "loans:2", "--reason", "again")
    assert res.returncode == 2 and "accepted already by ops" in _one_line(res)
    res = _cli(home, "admin", "audit", "list", "--json")
    (event,) = [e for e in json.loads(res.stdout) if e["action"] == "dataset.contract_accepted"]
    assert (event["actor"], event["details"]["reason"]) == ("ops", "the new plant reads to 5k")

    res = _cli(home, "risk", "data", "show", "loans")
    assert res.returncode == 0 and "accepted" in res.stdout and "range" in res.stdout
    assert "upload" in res.stdout and "block" in res.stdout
