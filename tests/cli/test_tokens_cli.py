"""`appliance tokens create | list | revoke` (appliance/cli/tokens.py) as an admin: the secret
printed once, alone on stdout, and working; `IssuedTokenPublic` with scopes and expiry; the
list and its `TokenPublic` records, which never hold a secret or a hash; a revoked token
refused; and the refusals.

Who may create and revoke (admins only) and a token read from a file or stdin are walked in
test_cli_permissions.py; who may list is checked here.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
from cli_home import invoke, make_home, refusal, run_cli, use_home
from pydantic import TypeAdapter

from appliance.errors import PermissionDenied
from appliance.governance.access import hash_token
from appliance.governance.users import (
    IssuedTokenPublic,
    TokenPublic,
    authenticate,
    get_user,
    set_disabled,
)
from appliance.store import dispose_all, session_scope


@pytest.fixture(scope="module")
def home(tmp_path_factory, _sqlite_template):
    return make_home(tmp_path_factory.mktemp("tokens-cli"), _sqlite_template)


@pytest.fixture
def as_admin(home, monkeypatch):
    cfg, tokens = home
    use_home(monkeypatch, cfg, token=tokens["admin"])
    return cfg


def _owner(cfg, secret: str) -> str:
    """The name of the user `secret` acts as (PermissionDenied when it may not act)."""
    try:
        with session_scope(cfg.db_url) as s:
            return authenticate(s, secret).name
    finally:
        dispose_all()


def _listed(*args: str) -> list[TokenPublic]:
    res = invoke(["tokens", "list", *args, "--json"])
    assert res.exit_code == 0, (res.output, res.exception)
    return TypeAdapter(list[TokenPublic]).validate_json(res.stdout)


def test_create_prints_the_secret_alone_and_once(home, monkeypatch):
    cfg, tokens = home
    # A process of its own: stdout holds the secret and nothing else, stderr nothing.
    res = run_cli(["tokens", "create", "val", "--name", "ci"], cfg, token=tokens["admin"])
    assert res.returncode == 0 and res.stderr == "", res.stderr
    secret = res.stdout.removesuffix("\n")
    assert secret.startswith("apl_") and "\n" not in secret and " " not in secret
    assert _owner(cfg, secret) == "val"
    # Listed with the role's default scopes, never shown again.
    use_home(monkeypatch, cfg, token=tokens["admin"])
    (doc,) = [t for t in _listed("--user", "val") if t.name == "ci"]
    assert (doc.user, doc.scopes, doc.state, doc.expires_at) == ("val", ["infer"], "active", None)


def test_create_json_carries_scopes_and_expiry(as_admin):
    before = dt.datetime.now(dt.timezone.utc)
    res = invoke(["tokens", "create", "ops", "--name", "labeler", "--scope", "feedback",
                  "--expires", "30m", "--json"])
    assert res.exit_code == 0, (res.output, res.exception)
    doc = IssuedTokenPublic.model_validate_json(res.stdout)
    assert (doc.user, doc.name, doc.scopes) == ("ops", "labeler", ["feedback"])
    assert _owner(as_admin, doc.token) == "ops"
    assert dt.timedelta(minutes=29) < doc.expires_at - before < dt.timedelta(minutes=31)
    (listed,) = [t for t in _listed("--user", "ops") if t.name == "labeler"]
    assert listed.scopes == ["feedback"] and listed.expires_at == doc.expires_at
    res = invoke(["tokens", "create", "ops", "--name", "at", "--expires",
                  "2999-01-01T00:00:00Z", "--json=name,expires_at"])
    assert json.loads(res.stdout) == {"name": "at", "expires_at": "2999-01-01T00:00:00Z"}



def test_create_json_names_the_scopes_the_token_has(as_admin):
    # As listed: sorted, each once, and the role's defaults when none are given.
    res = invoke(["tokens", "create", "ops", "--name", "both", "--scope", "infer", "--scope",
                  "feedback", "--scope", "infer", "--json=scopes"])
    assert res.exit_code == 0, (res.output, res.exception)
    assert json.loads(res.stdout) == {"scopes": ["feedback", "infer"]}
    res = invoke(["tokens", "create", "ops", "--name", "plain", "--json=scopes"])
    listed = {t.name: t.scopes for t in _listed("--user", "ops")}
    assert json.loads(res.stdout)["scopes"] == listed["plain"] != []
    assert listed["both"] == ["feedback", "infer"]


def test_list_never_shows_a_secret_or_its_hash(home, as_admin):
    _, tokens = home
    res = invoke(["tokens", "list"])
    assert res.exit_code == 0, (res.output, res.exception)
    lines = res.stdout.strip().splitlines()
    assert lines[0].split() == ["NAME", "USER", "SCOPES", "STATE", "EXPIRES", "REVOKED", "AGE"]
    rows = [line.split() for line in lines[1:]]
    assert ["app", "admin", "infer,feedback,admin", "active", "<none>", "<none>"] in [
        r[:6] for r in rows]
    docs = invoke(["tokens", "list", "--json"]).stdout
    assert all(set(d) == {"name", "user", "scopes", "created_at", "expires_at", "revoked_at",
                          "state"} for d in json.loads(docs))
    for secret in tokens.values():
        for shown in (res.stdout, docs):
            assert secret not in shown and hash_token(secret) not in shown
    assert {(t.user, t.name) for t in _listed()} >= {(u, "app") for u in tokens}
    assert {t.user for t in _listed("--user", "risk")} == {"risk"}
    doc = json.loads(invoke(["tokens", "list", "--user", "risk", "--json=user,state"]).stdout)
    assert doc == [{"user": "risk", "state": "active"}]


def test_list_needs_an_admin(home, monkeypatch):
    # Token names and scopes tell an attacker what to steal: no role below admin sees them.
    cfg, tokens = home
    for user, role in (("risk", "approver"), ("ops", "operator"), ("val", "viewer")):
        use_home(monkeypatch, cfg, token=tokens[user])
        assert f"has role '{role}'; 'admin' needs one of: admin" in refusal(
            invoke(["tokens", "list"]))


def test_revoke_refuses_the_token_from_then_on(as_admin, monkeypatch):
    secret = IssuedTokenPublic.model_validate_json(
        invoke(["tokens", "create", "risk", "--name", "old", "--json"]).stdout).token
    res = invoke(["tokens", "revoke", "risk", "--name", "old"])
    assert res.exit_code == 0 and res.stdout == "", (res.output, res.exception)
    (doc,) = [t for t in _listed("--user", "risk") if t.name == "old"]
    assert doc.state == "revoked" and doc.revoked_at is not None
    with pytest.raises(PermissionDenied, match="unknown or revoked"):
        _owner(as_admin, secret)
    assert refusal(invoke(["tokens", "revoke", "risk", "--name", "old"])) == (
        "user 'risk' has no active token named 'old'")
    monkeypatch.setenv("APPLIANCE_TOKEN", secret)
    assert refusal(invoke(["status"])) == "the API token is unknown or revoked"


def test_a_disabled_users_tokens_list_as_disabled_and_none_is_issued(as_admin):
    with session_scope(as_admin.db_url) as s:
        set_disabled(s, get_user(s, "admin"), "val", True)
    dispose_all()
    try:
        assert {t.state for t in _listed("--user", "val")} == {"disabled"}
        assert refusal(invoke(["tokens", "create", "val", "--name", "more"])) == (
            "user 'val' is disabled; `appliance users enable` first")
    finally:
        assert invoke(["users", "enable", "val"]).exit_code == 0


@pytest.mark.parametrize(("args", "says"), [
    (["create", "ghost", "--name", "x"], "no user named 'ghost'"),
    (["create", "val", "--name", "x", "--scope", "admin"],
     "scope 'admin' needs a user with role admin, not 'viewer'"),
    (["create", "val", "--name", "x", "--expires", "2999-01-01T00:00:00"],
     "--expires '2999-01-01T00:00:00' has no time zone; add Z or +00:00"),
    (["list", "--user", "ghost"], "no user named 'ghost'"),
    (["revoke", "ghost", "--name", "app"], "no user named 'ghost'"),
    (["revoke", "val", "--name", "nope"], "user 'val' has no active token named 'nope'"),
])
def test_refusals_name_what_was_wrong(as_admin, args, says):
    before = _listed()
    assert refusal(invoke(["tokens", *args])) == says
    assert _listed() == before
