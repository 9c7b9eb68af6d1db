"""Every mutating CLI command calls exactly one library operation.

An operation is a library function marked `@operation` (`appliance.governance.operations`):
it checks the permission, mutates and audits. The command translates input and output
around it. This walks every command the CLI has (the rows of `appliance.cli.commands` and
each group's subcommands), so a new command cannot slip past unclassified: each is a read, a
mutation (run here, as an admin, against a store of its own, inside `observed()`), or
excluded with a reason.

Commands that need Ray (train, tune, runs rerun, deploy, undeploy, rollback, promote's gate)
are given inputs that enter their operation and stop it before Ray: a spec file that does not
exist, a run or model that does not exist. Entering counts: the permission check and every
refusal are the operation's. `down` runs to the end: with no head recorded it touches no Ray.
And no command module writes through a session or audits: that is the operations' work.
"""

from __future__ import annotations

import ast
import json
import stat
from pathlib import Path

import pyarrow as pa
import pytest
from typer.testing import CliRunner

import appliance.cli
from appliance.artifacts import ArtifactStore
from appliance.cli._lazy import build
from appliance.cli.commands import COMMANDS
from appliance.cli.main import app
from appliance.config import load_config
from appliance.errors import ApplianceError, PermissionDenied
from appliance.governance import approvals, audit
from appliance.governance.operations import name_of, observed, operation
from appliance.governance.users import create_user, get_user, issue_token, set_disabled
from appliance.registry import datasets, models
from appliance.store import dispose_all, migrate, session_scope
from appliance.store.models import Alert

# Not walked, and why.
EXCLUDED = {
    # The monitor service: each round runs the loop, which deploys canaries, trains and
    # requests promotions for every deployment whose policy asks: many operations by design.
    "monitor": "the long-running monitor service (many operations per round, by design)",
    # The demo plays the world (traffic, labels, the approver) against a product it starts.
    "demo": "plays the world: traffic, labels and the approver, through many operations",
}
# Commands that change nothing (doctor writes only a probe file of its own and removes it).
READS = {
    "status", "doctor", "lineage", "approvals", "data list", "data show", "runs list",
    "runs show", "runs compare", "models list", "models show", "alerts list", "policy show",
    "predictions show", "predictions explain", "canary status", "drift compute",
    "audit verify", "audit export", "audit list", "report model", "report audit",
    "users list", "tokens list",
}
# Each mutating command: its arguments, the operation it must run, and None where it must
# succeed here, else what its error says (the inputs stop it inside the operation: before
# Ray, or where a store that has users refuses `init`).
MUTATING: dict[str, tuple[list[str], str, str | None]] = {
    "init": (["init"], "init", "already has users"),
    "train": (["train", "/no/such/spec.toml"], "train", "does not exist"),
    "tune": (["tune", "/no/such/spec.toml"], "tune", "does not exist"),
    "promote": (["promote", "ghost", "1"], "promote", "no model named 'ghost'"),
    "approve": (["approve", "@APPROVE@", "--json"], "approve", None),
    "reject": (["reject", "@REJECT@"], "reject", None),
    "rollback": (["rollback", "ghost"], "rollback", "no model named 'ghost'"),
    "deploy": (["deploy", "ghost"], "deploy", "no model named 'ghost'"),
    "undeploy": (["undeploy", "ghost"], "undeploy", "is not deployed"),
    "down": (["down", "--json"], "down", None),
    "review": (["review", "credit", "--notes", "fine", "--json"], "review", None),
    "data add": (["data", "add", "@CSV@", "--name", "labels", "--json"], "data.add", None),
    "data accept": (["data", "accept", "loans:1", "--reason", "fine"], "data.accept",
                    "nothing to accept"),
    "runs rerun": (["runs", "rerun", "feedc0de"], "runs.rerun", "no run 'feedc0de'"),
    "models set": (["models", "set", "credit", "--team", "x", "--json"], "models.set", None),
    "feedback add": (["feedback", "add", "@CSV@", "--deployment", "credit", "--json"],
                     "feedback.add", None),
    "alerts ack": (["alerts", "ack", "@ACK@", "--json"], "alerts.ack", None),
    "alerts resolve": (["alerts", "resolve", "@RESOLVE@", "--json"], "alerts.resolve", None),
    "policy set": (["policy", "set", "credit", "min_labelled_rows=10", "--json"], "policy.set",
                   None),
    "audit anchor": (["audit", "anchor"], "audit.anchor", "no unkeyed"),
    "users create": (["users", "create", "newbie", "--json"], "users.add", None),
    "users disable": (["users", "disable", "dis1", "--json"], "users.set_disabled", None),
    "users enable": (["users", "enable", "dis2", "--json"], "users.set_disabled", None),
    "tokens create": (["tokens", "create", "val", "--name", "extra", "--json"], "tokens.issue",
                      None),
    "tokens revoke": (["tokens", "revoke", "val", "--name", "app"], "tokens.revoke", None),
}

# The JSON contract of the commands whose records used to be hand-built dicts: same keys.
JSON_KEYS = {
    "users create": {"name", "role", "team", "token"},
    "tokens create": {"user", "name", "token", "scopes", "expires_at"},
    "feedback add": {"deployment", "rows", "path"},
    "models set": {"model", "owner", "team", "runbook_url", "risk_tier",
                   "review_interval_days", "description"},
}


def cli_commands() -> list[str]:
    """Every command path the CLI has, e.g. "promote" and "users create"."""
    paths = []
    for row in COMMANDS:
        command = build(row)
        subcommands = getattr(command, "commands", None)
        if subcommands is None:
            paths.append(row.name)
        else:
            paths.extend(f"{row.name} {name}" for name in subcommands)
    return paths


def test_every_command_is_classified():
    paths = cli_commands()
    assert len(paths) > 40
    classified = set(EXCLUDED) | READS | set(MUTATING)
    assert not set(EXCLUDED) & READS and not READS & set(MUTATING)
    missing = [p for p in paths if p not in classified]
    assert not missing, f"classify these commands in {__file__}: {missing}"
    assert not classified - set(paths), "classified commands the CLI no longer has"


# What only the library may do: write through a session (or query: that is the library's
# too), or write the audit log.
_SESSION_CALLS = {"add", "add_all", "delete", "commit", "flush", "exec", "execute", "merge"}


def writes_in(source: str) -> list[str]:
    """`line: call` for each call in `source` that writes through a session named `session`
    or `s`, or records an audit event."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)):
            continue
        owner, name = node.func.value.id, node.func.attr
        if (owner in ("session", "s") and name in _SESSION_CALLS) or (
                owner == "audit" and name == "record"):
            found.append(f"{node.lineno}: {owner}.{name}")
    return found


def test_the_probe_finds_writes():
    assert writes_in("session.add(row)\naudit.record(s, 'a')\nout.flush()\ns.exec(q)") == [
        "1: session.add", "2: audit.record", "4: s.exec"]


def test_no_command_module_writes_or_audits_itself():
    found = {p.name: writes_in(p.read_text())
             for p in sorted(Path(appliance.cli.__file__).parent.glob("*.py"))}
    assert len(found) > 10
    assert not {name: calls for name, calls in found.items() if calls}


class World:
    """A store with something for every mutating command to touch, and its admin's token."""

    def __init__(self, home) -> None:
        self.home = home
        self.url = f"sqlite:///{home / 'appliance.db'}"
        migrate(self.url)
        store = ArtifactStore(home / "artifacts")
        with audit.configured(load_config({"APPLIANCE_HOME": str(home)})), \
                session_scope(self.url) as s:
            for name, role in (("admin", "admin"), ("ops", "operator"), ("val", "viewer"),
                               ("dis1", "viewer"), ("dis2", "viewer")):
                create_user(s, name, role, actor="admin")
                secret = issue_token(s, name, "app", actor="admin")
                if name == "admin":
                    self.token = secret
            set_disabled(s, get_user(s, "admin"), "dis2", True)
            ds = datasets.add_table(s, store, pa.table({"x": [1.0, 2.0], "y": [0, 1]}),
                                    "loans", actor="ops")
            models.ensure_model(s, "credit", owner="ops", team="credit")
            run = models.start_run(s, model="credit", dataset=ds, spec={}, params={},
                                   seed=1, actor="ops")
            models.finish_run(s, run, metrics={"accuracy": 0.9}, device="cpu")
            ids = {}
            for number, alias in ((1, "champion"), (2, "challenger")):
                mv = models.register_version(
                    s, run=run, digest=str(number) * 64, profile_digest=None,
                    metrics={"accuracy": 0.9, "auc": 0.9}, features=["x"], categorical=[],
                    label="y", actor="ops")
                ids[alias] = approvals.request_promotion(
                    s, get_user(s, "ops"), mv, alias,
                    approvals.gate({"accuracy": 0.9, "auc": 0.9})).id
            alerts = [Alert(kind="drift", model_name="credit", message="m", owner="ops")
                      for _ in range(2)]
            s.add_all(alerts)
            s.flush()
            self.files = {"@APPROVE@": str(ids["champion"]), "@REJECT@": str(ids["challenger"]),
                          "@ACK@": str(alerts[0].id), "@RESOLVE@": str(alerts[1].id),
                          "@CSV@": str(home / "labels.csv")}
        (home / "labels.csv").write_text("request_id,row,label\nr1,0,1\n")
        dispose_all()

    def args(self, args: list[str]) -> list[str]:
        return [self.files.get(a, a) for a in args]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    return World(tmp_path_factory.mktemp("operations"))


@pytest.fixture(scope="module")
def viewer_token(world) -> str:
    with audit.configured(load_config({"APPLIANCE_HOME": str(world.home)})), \
            session_scope(world.url) as s:
        create_user(s, "looker", "viewer", actor="admin")
        secret = issue_token(s, "looker", "app", actor="admin")
    dispose_all()
    return secret


def _invoke(world, token, args, monkeypatch):
    """Run the command `args` in `world`'s home as `token`'s holder: the operations it ran
    and its result."""
    monkeypatch.setenv("APPLIANCE_HOME", str(world.home))
    for var in ("APPLIANCE_DB_URL", "APPLIANCE_ARTIFACTS", "APPLIANCE_CONFIG", "RAY_ADDRESS",
                "APPLIANCE_REQUIRE_TOKEN_FOR_READS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("APPLIANCE_TOKEN", token)
    try:
        with observed() as ran:
            res = CliRunner().invoke(app, world.args(args))
    finally:
        dispose_all()
    return ran, res


@pytest.mark.parametrize("path", sorted(MUTATING))
def test_a_mutating_command_runs_exactly_one_operation(world, monkeypatch, path):
    args, expected, error = MUTATING[path]
    ran, res = _invoke(world, world.token, args, monkeypatch)
    assert ran == [expected], (ran, res.output, res.exception)
    if error is None:
        assert res.exit_code == 0, (res.output, res.exception)
        if path in JSON_KEYS:
            assert set(json.loads(res.stdout)) == JSON_KEYS[path]
    else:
        # Stopped inside the operation by the inputs, with one of our errors: not a crash.
        assert isinstance(res.exception, ApplianceError), (res.output, res.exception)
        assert error in str(res.exception)


# `init` has no acting principal: it refuses any store that has users (tested above).
@pytest.mark.parametrize("path", sorted(set(MUTATING) - {"init"}))
def test_the_operation_checks_the_permission_itself(world, viewer_token, monkeypatch, path):
    # The CLI only authenticates: a viewer reaches the operation, which refuses them.
    args, expected, _ = MUTATING[path]
    ran, res = _invoke(world, viewer_token, args, monkeypatch)
    assert ran == [expected], (ran, res.output, res.exception)
    assert isinstance(res.exception, PermissionDenied), (res.output, res.exception)
    assert "has role 'viewer'" in str(res.exception)


def test_init_on_an_empty_store_is_one_operation(tmp_path, monkeypatch):
    monkeypatch.setenv("APPLIANCE_HOME", str(tmp_path))
    for var in ("APPLIANCE_DB_URL", "APPLIANCE_ARTIFACTS", "APPLIANCE_CONFIG", "APPLIANCE_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    try:
        with observed() as ran:
            res = CliRunner().invoke(app, ["init", "--json", "--admin", "root"])
    finally:
        dispose_all()
    assert ran == ["init"] and res.exit_code == 0, (ran, res.output, res.exception)
    doc = json.loads(res.stdout)
    assert set(doc) == {"home", "db_url", "artifacts", "admin", "token_file"}
    assert doc["admin"] == "root" and doc["home"] == str(tmp_path)
    saved = Path(doc["token_file"])
    assert saved.read_text().startswith("apl_")
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600


def test_an_operation_counts_once_however_deep_and_when_it_refuses():
    @operation("test.inner")
    def inner() -> int:
        return 1

    @operation("test.outer")
    def outer() -> int:
        return inner() + inner()

    @operation("test.refusing")
    def refusing() -> None:
        raise PermissionDenied("no")

    try:
        with observed() as ran:
            assert outer() == 2
            inner()
            with pytest.raises(PermissionDenied), observed() as nested:
                refusing()
        assert ran == ["test.outer", "test.inner", "test.refusing"]
        assert nested == ["test.refusing"]
        assert name_of(outer) == "test.outer" and name_of(cli_commands) is None
        with pytest.raises(ValueError, match="defined twice"):
            operation("test.inner")(lambda: None)
    finally:
        from appliance.governance.operations import OPERATIONS

        for name in ("test.inner", "test.outer", "test.refusing"):
            OPERATIONS.pop(name, None)
