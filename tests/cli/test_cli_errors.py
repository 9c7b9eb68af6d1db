"""Bad input exits 2 with exactly one line on stderr naming the problem (no traceback)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from appliance.cli.main import app
from appliance.errors import ApplianceError, exit_code_for
from appliance.store import dispose_all


def _cli(args, env, cwd=None):
    return subprocess.run([sys.executable, "-m", "appliance.cli", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    home = tmp_path_factory.mktemp("cli-home")
    e = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    e["APPLIANCE_HOME"] = str(home)
    res = _cli(["init", "--json"], e)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["admin"] == "admin"
    return e


BAD_INPUT = [
        (["lineage", "nosuchmodel@champion", "--json"], "no model named 'nosuchmodel'"),
        (["models", "show", "credit:x"], "must be a number"),
        (["data", "add", "/no/such/file.csv", "--name", "d"], "does not exist"),
        (["train", "/no/such/spec.toml"], "spec file '/no/such/spec.toml' does not exist"),
        (["approve", "99"], "no approval request #99"),
        (["users", "create", "bob", "--role", "wizard"], "unknown role 'wizard'"),
        (["init"], "already has users"),
        (["promote", "credit", "1"], "no model named 'credit'"),
        (["deploy", "ghost"], "no model named 'ghost'"),
        (["models", "list", "--bogus"], "No such option: --bogus"),
        (["policy", "show", "ghost"], "no model named 'ghost'"),
        (["policy", "set", "ghost", "min_labelled_rows=10"], "no model named 'ghost'"),
        (["policy", "set", "ghost", "nonsense"], "expected KEY=VALUE, got 'nonsense'"),
        (["canary", "status", "ghost"], "no model named 'ghost'"),
        (["alerts", "ack", "99"], "no alert #99"),
        (["alerts", "resolve", "99"], "no alert #99"),
        (["alerts", "list", "--status", "weird"], "unknown alert status 'weird'"),
        (["rollback", "ghost"], "no model named 'ghost'"),
        (["runs", "show", "feedc0de"], "no run 'feedc0de'"),
        (["runs", "rerun", "feedc0de"], "no run 'feedc0de'"),
        (["runs", "compare", "feedc0de", "../etc"], "no run 'feedc0de'"),
        (["runs", "show", "../etc"], "run id '../etc' must be letters and digits"),
        (["runs", "list", "--model", "ghost"], "no model named 'ghost'"),
        (["runs", "list", "--limit", "0"], "--limit must be at least 1"),
        (["models", "set", "ghost", "--team", "x"], "no model named 'ghost'"),
        (["monitor", "--interval", "0"], "--interval must be positive"),
        (["deploy", "ghost", "--spec", "/no/such/serving.toml"], "cannot be read"),
        (["deploy", "ghost", "--spec", "@SPEC@"], "max_ongoing_requests 4 is below max_batch_size"),
        (["tokens", "create", "admin", "--name", "x", "--scope", "write"], "unknown scope"),
        (["tokens", "create", "admin", "--name", "x", "--expires", "soon"], "--expires 'soon'"),
        (["tokens", "create", "admin", "--name", "x", "--expires", "2020-01-01T00:00:00Z"],
         "must lie in the future"),
        (["feedback", "add", "@LABELS@", "--deployment", "../x"],
         "deployment name '../x' is not valid"),
]


def _bad_input_cases():
    # The first case of each command family, and click's own usage errors, run the real
    # command as a process of its own; the rest run in-process (see below).
    seen = set()
    for args, needle in BAD_INPUT:
        real = args[0] not in seen or needle.startswith("No such option")
        seen.add(args[0])
        yield pytest.param(args, needle, real, id=" ".join(args[:3]))


def _files(tmp_path):
    spec = tmp_path / "serving.toml"
    spec.write_text("[serving]\nmax_batch_size = 8\nmax_ongoing_requests = 4\n")
    labels = tmp_path / "labels.csv"
    labels.write_text("request_id,row,label\nr1,0,1\n")
    return {"@SPEC@": str(spec), "@LABELS@": str(labels)}


@pytest.mark.parametrize(("args", "needle", "real"), list(_bad_input_cases()))
def test_bad_input_exits_2_with_one_line(env, args, needle, real, tmp_path, monkeypatch):
    files = _files(tmp_path)
    args = [files.get(a, a) for a in args]
    if real:
        res = _cli(args, env)
        assert res.returncode == 2, (res.stdout, res.stderr)
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0], res.stderr
        assert "Traceback" not in res.stderr
        return
    # In-process for speed: the same command code raises the same error, and a process of its
    # own for the family shows how `appliance.cli.main.run` turns one into exit 2 and one line.
    for var in [k for k in os.environ if k.startswith("APPLIANCE_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("APPLIANCE_HOME", env["APPLIANCE_HOME"])
    try:
        res = CliRunner().invoke(app, args)
    finally:
        dispose_all()
    assert isinstance(res.exception, ApplianceError), (res.output, res.exception)
    assert exit_code_for(res.exception) == 2
    assert needle in " ".join(str(res.exception).split()), res.exception


def test_malformed_spec_names_the_key(env, tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text('model = "credit"\ndataset = "d"\nlabel = "y"\nepochs = 3\n')
    res = _cli(["train", str(spec)], env)
    assert res.returncode == 2
    assert "unknown key(s) ['epochs']" in res.stderr
    spec.write_text('model = "credit"\ndataset = "d"\nlabel = "y"\n[params]\nepochs = -1\n')
    res = _cli(["train", str(spec)], env)
    assert res.returncode == 2 and "epochs" in res.stderr, res.stderr
    spec.write_text("model = [")
    res = _cli(["train", str(spec)], env)
    assert res.returncode == 2 and "is malformed" in res.stderr


def test_a_bad_tune_space_names_the_key(env, tmp_path):
    spec = tmp_path / "tune.toml"
    spec.write_text('model = "credit"\ndataset = "d"\nlabel = "y"\n'
                    '[tune.space]\nlr = {loguniform = [0.0, 0.1]}\n')
    res = _cli(["tune", str(spec)], env)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "'tune.space.lr' loguniform needs low > 0" in lines[0], lines


def test_mutation_without_permission_exits_2(env):
    created = _cli(["users", "create", "val", "--role", "viewer", "--json"], env)
    assert created.returncode == 0, created.stderr
    token = json.loads(created.stdout)["token"]
    res = _cli(["users", "create", "eve", "--role", "admin"], {**env, "APPLIANCE_TOKEN": token})
    assert res.returncode == 2 and "has role 'viewer'" in res.stderr


def test_read_commands_print_one_json_document(env):
    for args in (["status", "--json"], ["models", "list", "--json"], ["data", "list", "--json"],
                 ["audit", "list", "--json"], ["alerts", "list", "--json"],
                 ["alerts", "list", "--status", "all", "--json"],
                 ["approvals", "--json"], ["users", "list", "--json"]):
        res = _cli(args, env)
        assert res.returncode == 0, (args, res.stderr)
        json.loads(res.stdout)
    res = _cli(["audit", "verify", "--json"], env)
    assert res.returncode == 0 and json.loads(res.stdout)["ok"] is True

