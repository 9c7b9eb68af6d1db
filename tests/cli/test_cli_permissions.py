"""Least privilege through the real CLI.

Every mutating command is refused without a token, with a wrong one and with too small a
role (exit 2, one stderr line naming what is missing, nothing audited); reads need "read"
where the configuration says so; a token never travels on the command line; a database URL's
password never reaches any output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
from sqlalchemy import func, text
from sqlalchemy.engine import make_url
from sqlmodel import select
from typer.testing import CliRunner

from appliance.artifacts import ArtifactStore
from appliance.cli.main import app
from appliance.config import load_config
from appliance.errors import PermissionDenied, exit_code_for
from appliance.governance import approvals, audit
from appliance.governance.users import create_user, get_user, issue_token
from appliance.registry import datasets, models
from appliance.store import dispose_all, migrate, session_scope
from appliance.store.models import Alert, AuditEvent

WRONG = "apl_" + "x" * 43  # the shape of a real secret, known to no store


def _cli(args, env, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "appliance.cli", *args], env=env, input=stdin,
                          capture_output=True, text=True, timeout=120)


def _bare_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("APPLIANCE_") and k != "RAY_ADDRESS"}
    env["APPLIANCE_HOME"] = str(home)
    return env


class World:
    """An embedded appliance with one of each role and something for every command to touch.

    No token is saved under its home, so a command finds only the token a test gives it.
    """

    def __init__(self, home: Path) -> None:
        self.home = home
        self.url = f"sqlite:///{home / 'appliance.db'}"
        migrate(self.url)
        store = ArtifactStore(home / "artifacts")
        self.tokens: dict[str, str] = {}
        # Signed with the key of the home the CLI verifies in, not the test session's.
        with audit.configured(load_config({"APPLIANCE_HOME": str(home)})), \
                session_scope(self.url) as s:
            for name, role in (("admin", "admin"), ("ops", "operator"), ("risk", "approver"),
                               ("val", "viewer")):
                create_user(s, name, role, actor="admin")
                self.tokens[name] = issue_token(s, name, "app", actor="admin")
            ds = datasets.add_table(s, store, pa.table({"x": [1.0, 2.0], "y": [0, 1]}),
                                    "loans", actor="ops")
            models.ensure_model(s, "credit", owner="ops", team="credit")
            run = models.start_run(s, model="credit", dataset=ds, spec={}, params={},
                                   seed=1, actor="ops")
            models.finish_run(s, run, metrics={"accuracy": 0.9}, device="cpu")
            self.run_id = run.id
            mv = models.register_version(s, run=run, digest="d" * 64, profile_digest=None,
                                         metrics={"accuracy": 0.9, "auc": 0.9}, features=["x"],
                                         categorical=[], label="y", actor="ops")
            approvals.request_promotion(s, get_user(s, "ops"), mv, "champion",
                                        approvals.gate({"accuracy": 0.9, "auc": 0.9}))
            s.add(Alert(kind="drift", model_name="credit", message="m", owner="ops"))
        dispose_all()
        self.env = _bare_env(home)
        self.files = {"@CSV@": home / "labels.csv", "@WRONG@": home / "wrong-token",
                      "@RUN@": self.run_id}
        self.files["@CSV@"].write_text("request_id,row,label\nr1,0,1\n")
        self.files["@WRONG@"].write_text(WRONG + "\n")
        for name, secret in self.tokens.items():
            path = home / f"{name}.token"
            path.write_text(secret + "\n")
            path.chmod(0o600)
            self.files[f"@{name}@"] = path

    def args(self, args: list[str]) -> list[str]:
        return [str(self.files.get(a, a)) for a in args]

    def audit_events(self) -> int:
        with session_scope(self.url) as s:
            return s.exec(select(func.count()).select_from(AuditEvent)).one()


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    return World(tmp_path_factory.mktemp("permissions"))


# Each mutating command with what it needs and a role one step too small (None: "read" is
# the least there is). Arguments name things that exist, so only the permission can refuse.
MUTATING = [
    (["users", "create", "newbie", "--role", "viewer"], "admin", "ops"),
    (["users", "disable", "val"], "admin", "ops"),
    (["users", "enable", "val"], "admin", "ops"),
    (["tokens", "create", "val", "--name", "extra"], "admin", "ops"),
    (["tokens", "revoke", "val", "--name", "app"], "admin", "ops"),
    (["data", "add", "@CSV@", "--name", "loans"], "operate", "val"),
    (["data", "accept", "loans:1", "--reason", "fine"], "operate", "val"),
    # The spec is not read before the caller is known: a refusal, not "does not exist".
    (["train", "/no/such/spec.toml"], "operate", "val"),
    (["runs", "rerun", "@RUN@"], "operate", "val"),
    (["tune", "/no/such/spec.toml"], "operate", "val"),
    (["models", "set", "credit", "--team", "x"], "operate", "val"),
    (["models", "set", "credit", "--risk-tier", "low"], "approve", "ops"),
    (["promote", "credit", "1"], "operate", "val"),
    (["approve", "1"], "approve", "ops"),
    (["reject", "1"], "approve", "ops"),
    (["rollback", "credit"], "approve", "ops"),
    (["deploy", "credit"], "operate", "val"),
    (["undeploy", "credit"], "operate", "val"),
    (["down"], "operate", "val"),
    (["feedback", "add", "@CSV@", "--deployment", "credit"], "operate", "val"),
    (["monitor", "--once"], "read", None),
    (["alerts", "ack", "1"], "operate", "val"),
    (["alerts", "resolve", "1"], "operate", "val"),
    (["policy", "set", "credit", "min_labelled_rows=10"], "operate", "val"),
]


def _cases():
    for args, needs, smaller in MUTATING:
        name = " ".join(args[:2])
        yield pytest.param(args, needs, "wrong", None, id=f"{name}-wrong-token")
        if smaller:
            yield pytest.param(args, needs, "small", smaller, id=f"{name}-as-{smaller}")


@pytest.mark.parametrize(("args", "needs"), [pytest.param(a, n, id=" ".join(a[:2]))
                                              for a, n, _ in MUTATING])
def test_mutations_are_refused_without_a_token(world, args, needs):
    # The real command, as a process of its own: the exit code and the one stderr line are
    # what `appliance.cli.main.run` makes of the refusal.
    before = world.audit_events()
    res = _cli(world.args(args), world.env)
    assert res.returncode == 2, (res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert "no API token: '" in lines[0], res.stderr
    assert "needs the token of a user with role" in lines[0] and "--token-file" in lines[0]
    assert res.stdout == ""
    assert world.audit_events() == before


@pytest.mark.parametrize(("args", "needs", "case", "who"), list(_cases()))
def test_mutations_are_refused_with_a_wrong_token_or_too_small_a_role(
        world, monkeypatch, args, needs, case, who):
    # In-process for speed: each command's refusal through a process of its own, and the
    # mapping of a refusal to exit 2 and one stderr line, are proven by the test above.
    monkeypatch.setenv("APPLIANCE_HOME", str(world.home))
    for var in ("APPLIANCE_DB_URL", "APPLIANCE_ARTIFACTS", "APPLIANCE_CONFIG", "APPLIANCE_TOKEN",
                "APPLIANCE_REQUIRE_TOKEN_FOR_READS"):
        monkeypatch.delenv(var, raising=False)
    extra = []
    if case == "wrong":
        extra = ["--token-file", str(world.files["@WRONG@"])]
    else:
        monkeypatch.setenv("APPLIANCE_TOKEN", world.tokens[who])
    before = world.audit_events()
    try:
        res = CliRunner().invoke(app, world.args(args) + extra)
    finally:
        dispose_all()
    assert isinstance(res.exception, PermissionDenied), (res.output, res.exception)
    assert exit_code_for(res.exception) == 2
    if case == "wrong":
        assert "the API token is unknown or revoked" in str(res.exception)
    else:
        assert f"has role '{_role(who)}'; '{needs}' needs one of" in str(res.exception)
    assert res.stdout == ""
    assert world.audit_events() == before


def _role(user: str) -> str:
    return {"admin": "admin", "ops": "operator", "risk": "approver", "val": "viewer"}[user]


def test_a_token_on_the_command_line_is_refused_and_never_echoed(world):
    secret = world.tokens["admin"]
    res = _cli(["users", "create", "carol", "--token", secret], world.env)
    assert res.returncode == 2
    assert secret not in res.stderr and secret not in res.stdout
    line = res.stderr.strip()
    assert "--token takes no token on the command line (a secret)" in line
    assert "--token-file PATH" in line and "--token - to read it from stdin" in line
    res = _cli(["users", "list", "--token", "hunter2"], world.env)
    assert res.returncode == 2 and "hunter2" not in res.stderr
    assert "--token takes no token on the command line" in res.stderr


def test_a_token_from_a_file_stdin_or_the_environment(world):
    admin = world.tokens["admin"]
    by_file = _cli(["tokens", "create", "val", "--name", "f", "--token-file",
                    str(world.files["@admin@"])], world.env)
    assert by_file.returncode == 0, by_file.stderr
    by_stdin = _cli(["tokens", "create", "val", "--name", "s", "--token", "-"], world.env,
                    stdin=admin + "\n")
    assert by_stdin.returncode == 0, by_stdin.stderr
    by_stdin_file = _cli(["tokens", "create", "val", "--name", "s2", "--token-file", "-"],
                         world.env, stdin=admin)
    assert by_stdin_file.returncode == 0, by_stdin_file.stderr
    by_env = _cli(["tokens", "list", "--user", "val", "--json"],
                  {**world.env, "APPLIANCE_TOKEN": admin})
    assert by_env.returncode == 0, by_env.stderr
    assert {"f", "s", "s2"} <= {t["name"] for t in json.loads(by_env.stdout)}
    empty = world.home / "empty.token"
    empty.write_text("\n")
    for args, needle in [
        (["--token-file", str(empty)], "holds no token"),
        (["--token-file", str(world.home / "missing.token")], "cannot be read"),
    ]:
        res = _cli(["users", "disable", "val", *args], world.env)
        assert res.returncode == 2 and needle in res.stderr, res.stderr
        assert len(res.stderr.strip().splitlines()) == 1


READS = [
    ["status"], ["models", "list"], ["models", "show", "credit:1"], ["lineage", "credit:1"],
    ["data", "list"], ["data", "show", "loans:1"], ["audit", "list"], ["audit", "verify"],
    ["alerts", "list"],
    ["approvals"], ["users", "list"], ["policy", "show", "credit"],
    ["canary", "status", "credit"], ["runs", "list"], ["runs", "show", "@RUN@"],
    ["runs", "compare", "@RUN@", "@RUN@"],
]


@pytest.mark.parametrize("args", READS, ids=" ".join)
def test_reads_need_read_where_configured(world, monkeypatch, args):
    args = world.args(args)
    # In-process for speed (the subprocess path is the same code, proven by the tests above).
    monkeypatch.setenv("APPLIANCE_HOME", str(world.home))
    for var in ("APPLIANCE_DB_URL", "APPLIANCE_ARTIFACTS", "APPLIANCE_CONFIG", "APPLIANCE_TOKEN",
                "APPLIANCE_REQUIRE_TOKEN_FOR_READS"):
        monkeypatch.delenv(var, raising=False)
    runner = CliRunner()
    # The embedded default: a read with no token at all still runs.
    assert runner.invoke(app, [*args, "--json"]).exit_code == 0
    monkeypatch.setenv("APPLIANCE_REQUIRE_TOKEN_FOR_READS", "true")
    res = runner.invoke(app, [*args, "--json"])
    assert isinstance(res.exception, PermissionDenied), res.output
    assert str(res.exception).startswith(
        "no API token: 'read' needs the token of a user with role admin, approver, operator, "
        "viewer")
    res = runner.invoke(app, [*args, "--json", "--token-file", str(world.files["@WRONG@"])])
    assert isinstance(res.exception, PermissionDenied), res.output
    res = runner.invoke(app, [*args, "--json", "--token-file", str(world.files["@val@"])])
    assert res.exit_code == 0, (res.output, res.exception)
    json.loads(res.stdout)


def test_a_disabled_users_token_is_refused_by_the_cli(world):
    admin_env = {**world.env, "APPLIANCE_TOKEN": world.tokens["admin"]}
    cluster = {**world.env, "APPLIANCE_REQUIRE_TOKEN_FOR_READS": "1"}
    as_risk = ["--token-file", str(world.files["@risk@"])]
    assert _cli(["models", "list", *as_risk], cluster).returncode == 0
    res = _cli(["users", "disable", "risk", "--json"], admin_env)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["disabled_at"] is not None
    try:
        res = _cli(["models", "list", *as_risk], cluster)
        assert res.returncode == 2 and "user 'risk' is disabled" in res.stderr
        res = _cli(["users", "list", "--json"], admin_env)
        assert {d["name"]: d["disabled_at"] is not None for d in json.loads(res.stdout)}["risk"]
    finally:
        assert _cli(["users", "enable", "risk"], admin_env).returncode == 0
    assert _cli(["models", "list", *as_risk], cluster).returncode == 0


@pytest.mark.postgres
def test_a_database_password_never_reaches_any_output(pg_admin, tmp_path):
    password = "pw-Secret-7f3a9c"
    # The suite's server trusts local connections, so the password is carried but not needed.
    url = make_url(pg_admin.create()).set(password=password)
    env = {**_bare_env(tmp_path), "APPLIANCE_DB_URL": url.render_as_string(hide_password=False)}
    try:
        runs = [_cli(["init", "--json"], env), _cli(["init"], env),
                _cli(["status", "--json"], env), _cli(["status"], env),
                _cli(["users", "list"], env), _cli(["models", "show", "ghost:1"], env),
                _cli(["users", "create", "x", "--token", "apl_" + password], env)]
        assert runs[0].returncode == 0, runs[0].stderr
        assert json.loads(runs[0].stdout)["db_url"] == url.render_as_string()
        assert "***" in json.loads(runs[2].stdout)["db_url"]
        assert [r.returncode for r in runs] == [0, 2, 0, 0, 0, 2, 2], [r.stderr for r in runs]
        for broken in (url.set(port=1), url.set(drivername="postgresql+nosuchdriver")):
            bad = {**env, "APPLIANCE_DB_URL": broken.render_as_string(hide_password=False)}
            runs.append(_cli(["status", "--json"], bad))
            assert runs[-1].returncode == 2, runs[-1].stderr
        for res in runs:
            assert password not in res.stdout and password not in res.stderr, (
                res.args, res.stdout, res.stderr)
    finally:
        dispose_all()
        pg_admin.drop(url.render_as_string(hide_password=False))


def test_the_audit_log_names_no_secret(world):
    with session_scope(world.url) as s:
        rows = s.execute(text("SELECT details FROM auditevent")).all()
    dumped = " ".join(str(r[0]) for r in rows)
    for secret in world.tokens.values():
        assert secret not in dumped
