"""`appliance.cli._context`: the configuration with its store migrated (once per URL), and who
is acting.

The token is the first found of: the command line (``--token -`` or ``--token-file``),
``APPLIANCE_TOKEN``, the file `appliance init` saved. No token at all is refused naming the
permission, the roles that hold it and how to pass one; a token that is unknown, revoked or
expired, or whose user is disabled, is refused by `acting`, `acting_token` and `reading` alike;
a read with no token runs where the configuration lets it, and a token that is given is checked
all the same. tests/cli/test_cli_permissions.py walks every command through the same refusals.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import pytest
from sqlmodel import select
from typer.testing import CliRunner

from appliance.cli import _context
from appliance.cli._context import acting, acting_token, acting_user, config, reading
from appliance.cli.main import app
from appliance.errors import InvalidInput, PermissionDenied, exit_code_for
from appliance.governance.access import Principal
from appliance.governance.users import (
    create_user,
    get_user,
    issue_token,
    revoke_token,
    set_disabled,
)
from appliance.store import dispose_all, migrate, session_scope
from appliance.store.models import ApiToken, utcnow

HOW = ("pass --token-file PATH or --token - (stdin), set APPLIANCE_TOKEN, or run "
       "`appliance init` first")


class World:
    """A home whose saved token is the admin's, and one token in each state."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.url = f"sqlite:///{home / 'appliance.db'}"
        migrate(self.url)
        self.tokens: dict[str, str] = {}
        with session_scope(self.url) as s:
            for name, role in (("admin", "admin"), ("ops", "operator"), ("val", "viewer"),
                               ("gone", "operator")):
                create_user(s, name, role, actor="admin")
            for user, name in (("admin", "app"), ("ops", "app"), ("val", "app"),
                               ("ops", "old"), ("ops", "short"), ("gone", "app")):
                self.tokens[f"{user}/{name}"] = issue_token(
                    s, user, name, actor="admin",
                    expires_at=utcnow() + dt.timedelta(hours=1) if name == "short" else None)
            revoke_token(s, "ops", "old", actor="admin")
            set_disabled(s, get_user(s, "admin"), "gone", True)
            # Issued in the future, as it must be; then the hour passes.
            short = s.exec(select(ApiToken).where(ApiToken.name == "short")).one()
            short.expires_at = utcnow() - dt.timedelta(minutes=1)
            s.add(short)
        dispose_all()
        (home / "token").write_text(self.tokens["admin/app"] + "\n")
        for key, secret in self.tokens.items():
            (home / f"{key.replace('/', '-')}.token").write_text(secret + "\n")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    return World(tmp_path_factory.mktemp("context"))


@pytest.fixture
def env(monkeypatch, world):
    """The world's home, with no other APPLIANCE_ setting; returns monkeypatch to set more."""
    for var in ("APPLIANCE_DB_URL", "APPLIANCE_ARTIFACTS", "APPLIANCE_CONFIG", "APPLIANCE_TOKEN",
                "APPLIANCE_REQUIRE_TOKEN_FOR_READS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("APPLIANCE_HOME", str(world.home))
    yield monkeypatch
    dispose_all()


@pytest.fixture
def no_saved_token(env, world, tmp_path):
    """The world's store seen from a home where `appliance init` saved no token."""
    env.setenv("APPLIANCE_HOME", str(tmp_path))
    env.setenv("APPLIANCE_DB_URL", world.url)
    return env


# --- the configuration ------------------------------------------------------------------------

def _schema_version(home: Path) -> list[tuple[str]]:
    with sqlite3.connect(home / "appliance.db") as conn:
        return conn.execute("SELECT version_num FROM alembic_version").fetchall()


def test_config_migrates_each_store_once_per_process(env, tmp_path):
    env.setattr(_context, "_migrated", set())
    first, second = tmp_path / "first", tmp_path / "second"
    env.setenv("APPLIANCE_HOME", str(first))
    cfg = config()
    assert cfg.db_url == f"sqlite:///{first / 'appliance.db'}"
    assert len(_schema_version(first)) == 1 and _context._migrated == {cfg.db_url}
    # Known to be current now: the next command in this process does not look again.
    with sqlite3.connect(first / "appliance.db") as conn:
        conn.execute("DELETE FROM alembic_version")
    assert config().db_url == cfg.db_url
    assert _schema_version(first) == []
    # Another store is migrated when first used.
    env.setenv("APPLIANCE_HOME", str(second))
    assert not (second / "appliance.db").exists()
    cfg2 = config()
    assert len(_schema_version(second)) == 1
    assert _context._migrated == {cfg.db_url, cfg2.db_url}


# --- which token ------------------------------------------------------------------------------

def test_the_token_given_beats_the_environment_beats_the_saved_file(env, world):
    cfg = config()
    env.setenv("APPLIANCE_TOKEN", world.tokens["val/app"])
    assert acting_user(cfg, world.tokens["ops/app"]).name == "ops"
    assert acting_user(cfg, None).name == "val"
    env.setenv("APPLIANCE_TOKEN", "  ")  # blank: as if unset
    assert acting_user(cfg, None).name == "admin"
    env.delenv("APPLIANCE_TOKEN")
    assert acting_user(cfg, None).name == "admin"


@pytest.mark.parametrize(("permission", "roles"), [
    ("read", "admin, approver, operator, viewer"), ("operate", "admin, operator"),
    ("approve", "admin, approver"), ("admin", "admin"),
])
def test_no_token_at_all_names_the_permission_the_roles_and_how(no_saved_token, permission,
                                                                 roles):
    expected = f"no API token: {permission!r} needs the token of a user with role {roles}; {HOW}"
    for call in (lambda: acting(None, permission), lambda: acting_token(config(), None,
                                                                        permission)):
        with pytest.raises(PermissionDenied) as info:
            call()
        assert str(info.value) == expected


def test_an_empty_saved_token_file_is_no_token(no_saved_token, tmp_path):
    (tmp_path / "token").write_text("\n")
    with pytest.raises(PermissionDenied, match=r"^no API token: 'operate'"):
        acting(None, "operate")


# --- refused tokens ---------------------------------------------------------------------------

REFUSED = [
    ("unknown", "apl_" + "x" * 43, "the API token is unknown or revoked"),
    ("revoked", "ops/old", "the API token is unknown or revoked"),
    ("expired", "ops/short", "the API token 'short' expired at "),
    ("disabled", "gone/app", "user 'gone' is disabled; their tokens are refused"),
]


@pytest.mark.parametrize(("key", "needle"), [pytest.param(k, n, id=i) for i, k, n in REFUSED])
@pytest.mark.parametrize("how", ["acting", "acting_token", "reading"])
def test_a_token_that_may_not_act_is_refused(env, world, key, needle, how):
    secret = world.tokens.get(key, key)
    # Reads are open here (the embedded default): a token that is given is checked all the same.
    call = {"acting": lambda: acting(secret, "read"),
            "acting_token": lambda: acting_token(config(), secret, "read"),
            "reading": lambda: reading(secret)}[how]
    with pytest.raises(PermissionDenied) as info:
        call()
    assert str(info.value).startswith(needle)
    assert secret not in str(info.value)


def test_acting_token_names_who_issued_the_token(env, world):
    user, row = acting_token(config(), world.tokens["ops/app"], "operate")
    assert (user.name, user.role) == ("ops", "operator")
    assert (row.name, row.issued_by, row.revoked_at) == ("app", "admin", None)


# --- reads ------------------------------------------------------------------------------------

def test_a_read_with_no_token_runs_where_the_configuration_lets_it(no_saved_token):
    cfg, reader = reading(None)
    assert reader is None and not cfg.require_token_for_reads
    no_saved_token.setenv("APPLIANCE_REQUIRE_TOKEN_FOR_READS", "true")
    with pytest.raises(PermissionDenied) as info:
        reading(None)
    assert str(info.value) == (
        f"no API token: 'read' needs the token of a user with role admin, approver, operator, "
        f"viewer; {HOW}")


def test_a_reader_is_who_the_token_found_belongs_to(env, world):
    env.setenv("APPLIANCE_REQUIRE_TOKEN_FOR_READS", "true")
    assert reading(world.tokens["val/app"])[1] == Principal(name="val", role="viewer")
    # No token given: the saved one reads, even where reads are open.
    assert reading(None)[1] == Principal(name="admin", role="admin")
    env.delenv("APPLIANCE_REQUIRE_TOKEN_FOR_READS")
    assert reading(None)[1] == Principal(name="admin", role="admin")


# --- the --token and --token-file options, through a command ----------------------------------

def _invoke(args, stdin=None):
    res = CliRunner().invoke(app, args, input=stdin)
    dispose_all()
    return res


def test_the_option_beats_appliance_token(env, world):
    env.setenv("APPLIANCE_TOKEN", world.tokens["val/app"])
    refused = _invoke(["tokens", "list", "--json"])
    assert isinstance(refused.exception, PermissionDenied)
    assert "has role 'viewer'" in str(refused.exception)
    by_file = _invoke(["tokens", "list", "--json", "--token-file",
                       str(world.home / "admin-app.token")])
    assert by_file.exit_code == 0, (by_file.output, by_file.exception)
    by_stdin = _invoke(["tokens", "list", "--json", "--token", "-"],
                       stdin=world.tokens["admin/app"] + "\n")
    assert by_stdin.exit_code == 0, (by_stdin.output, by_stdin.exception)


def test_a_token_file_under_home_is_found_with_a_tilde(env, world):
    env.setenv("HOME", str(world.home))
    res = _invoke(["tokens", "list", "--json", "--token-file", "~/admin-app.token"])
    assert res.exit_code == 0, (res.output, res.exception)


@pytest.mark.parametrize(("args", "stdin", "message"), [
    (["--token", "-"], "", "stdin holds no token"),
    (["--token-file", "-"], "apl_first apl_second\n", "stdin must hold one token and nothing else"),
    (["--token-file", "@TWO@"], None, "--token-file '@TWO@' must hold one token and nothing else"),
    (["--token-file", "@BINARY@"], None, "--token-file '@BINARY@' is not a text file"),
    (["--token-file", "@DIR@"], None, "--token-file '@DIR@' cannot be read: Is a directory"),
])
def test_what_the_options_refuse(env, tmp_path, args, stdin, message):
    files = {"@TWO@": tmp_path / "two.token", "@BINARY@": tmp_path / "binary.token",
             "@DIR@": tmp_path}
    files["@TWO@"].write_text("apl_first\napl_second\n")
    files["@BINARY@"].write_bytes(b"\xff\xfe\x00apl")
    for mark, path in files.items():
        args = [str(path) if a == mark else a for a in args]
        message = message.replace(mark, str(path))
    res = _invoke(["users", "list", "--json", *args], stdin=stdin)
    assert isinstance(res.exception, InvalidInput), (res.output, res.exception)
    assert exit_code_for(res.exception) == 2
    assert str(res.exception) == message
    assert res.stdout == ""
