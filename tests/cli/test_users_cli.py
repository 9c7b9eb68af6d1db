"""`appliance users create | list | disable | enable` (appliance/cli/users.py) as an admin:
the tables and the `NewUserPublic` / `UserPublic` documents, a new user's first token that
works once printed, a disabled user's token refused until enabled, and the refusals.

Who may run them (admins only) is walked for every command by test_cli_permissions.py.
"""

from __future__ import annotations

import json

import pytest
from cli_home import PEOPLE, invoke, make_home, one_error_line, refusal, run_cli, use_home
from pydantic import TypeAdapter

from appliance.governance.users import NewUserPublic, UserPublic


@pytest.fixture(scope="module")
def home(tmp_path_factory, _sqlite_template):
    return make_home(tmp_path_factory.mktemp("users-cli"), _sqlite_template)


@pytest.fixture
def as_admin(home, monkeypatch):
    cfg, tokens = home
    use_home(monkeypatch, cfg, token=tokens["admin"])
    return tokens


def _users() -> dict[str, UserPublic]:
    """`users list --json`, read as the records it declares, by name."""
    res = invoke(["users", "list", "--json"])
    assert res.exit_code == 0, (res.output, res.exception)
    return {u.name: u for u in TypeAdapter(list[UserPublic]).validate_json(res.stdout)}


def test_create_prints_the_new_user_and_a_first_token_that_works(as_admin, monkeypatch):
    res = invoke(["users", "create", "nina", "--role", "operator", "--team", "risk"])
    assert res.exit_code == 0, (res.output, res.exception)
    header, row = res.stdout.strip().splitlines()
    assert header.split() == ["NAME", "ROLE", "TEAM", "TOKEN"]
    name, role, team, token = row.split()
    assert (name, role, team) == ("nina", "operator", "risk") and token.startswith("apl_")
    assert _users()["nina"].role == "operator"
    # The token acts as nina: an operator may not create users, and is told who they are.
    monkeypatch.setenv("APPLIANCE_TOKEN", token)
    assert "user 'nina' has role 'operator'" in refusal(invoke(["users", "create", "x"]))


def test_create_json_is_its_record_with_the_role_and_team_defaults(as_admin):
    res = invoke(["users", "create", "olga", "--json"])
    assert res.exit_code == 0, (res.output, res.exception)
    doc = NewUserPublic.model_validate_json(res.stdout)
    assert (doc.name, doc.role, doc.team) == ("olga", "viewer", "default")
    assert doc.token.startswith("apl_") and len(doc.token) > 40
    res = invoke(["users", "create", "paul", "--json=name,team"])
    assert json.loads(res.stdout) == {"name": "paul", "team": "default"}


def test_list_shows_everyone_by_name_and_no_secret(as_admin):
    res = invoke(["users", "list"])
    assert res.exit_code == 0, (res.output, res.exception)
    lines = res.stdout.strip().splitlines()
    assert lines[0].split() == ["NAME", "ROLE", "TEAM", "DISABLED", "AGE"]
    rows = [line.split() for line in lines[1:]]
    names = [r[0] for r in rows]
    assert names == sorted(names) and set(PEOPLE) <= set(names)
    assert rows[names.index("ops")][:4] == ["ops", "operator", "credit", "<none>"]
    for secret in as_admin.values():
        assert secret not in res.stdout
    res = invoke(["users", "list", "--json=role,name"])
    doc = json.loads(res.stdout)
    assert {"name": "risk", "role": "approver"} in doc and list(doc[0]) == ["role", "name"]


def test_disable_refuses_the_users_token_until_enabled(home, as_admin, monkeypatch):
    cfg, tokens = home
    res = invoke(["users", "disable", "risk"])
    assert res.exit_code == 0, (res.output, res.exception)
    assert res.stdout == "" and res.stderr.strip() == "user risk disabled"
    try:
        assert _users()["risk"].disabled_at is not None
        # A process of its own, as the disabled user: exit 2, one line.
        line = one_error_line(run_cli(["users", "list"], cfg, token=tokens["risk"]))
        assert "user 'risk' is disabled" in line
        assert "already disabled" in refusal(invoke(["users", "disable", "risk"]))
    finally:
        res = invoke(["users", "enable", "risk", "--json"])
    assert res.exit_code == 0, (res.output, res.exception)
    doc = UserPublic.model_validate_json(res.stdout)
    assert (doc.name, doc.role, doc.disabled_at) == ("risk", "approver", None)
    assert "user 'risk' is already enabled" in refusal(invoke(["users", "enable", "risk"]))
    monkeypatch.setenv("APPLIANCE_TOKEN", tokens["risk"])
    assert invoke(["users", "list"]).exit_code == 0


@pytest.mark.parametrize(("args", "says"), [
    (["users", "create", "ops"], "user 'ops' already exists"),
    (["users", "create", "../x"], "user name '../x' must be letters, digits"),
    (["users", "create", "quinn", "--role", "root"],
     "unknown role 'root'; roles are viewer, operator, approver, admin"),
    (["users", "disable", "admin"], "user 'admin' cannot disable themselves; ask another admin"),
    (["users", "disable", "ghost"], "no user named 'ghost'"),
    (["users", "enable", "ghost"], "no user named 'ghost'"),
])
def test_refusals_name_what_was_wrong(as_admin, args, says):
    before = _users()
    assert says in refusal(invoke(args))
    assert _users() == before
