"""Users and their tokens (`appliance.governance.users`), on SQLite and PostgreSQL: a token
authenticates until revoked, roles and names are checked, and a token listing or a disabled
user is refused by the CLI's authentication and dropped from the set serving replicas load,
each change audited."""

from __future__ import annotations

import datetime as dt

import governance_world as gw
import pytest
from sqlalchemy import text
from sqlmodel import select

from appliance.errors import ConflictError, InvalidInput, NotFound, PermissionDenied
from appliance.governance import audit, serving_tokens
from appliance.governance.users import (
    authenticate,
    create_user,
    get_user,
    issue_token,
    list_tokens,
    list_users,
    revoke_token,
    set_disabled,
)
from appliance.store import session_scope, utcnow
from appliance.store.models import ApiToken


def _people(url) -> dict[str, str]:
    with session_scope(url) as s:
        create_user(s, "root", "admin", actor="root")
        create_user(s, "ops", "operator", actor="root")
        create_user(s, "viewer", "viewer", actor="root")
        return {
            "root": issue_token(s, "root", "laptop", actor="root"),
            "ops": issue_token(s, "ops", "laptop", actor="root"),
            "ops-ci": issue_token(s, "ops", "ci", actor="root", scopes=["infer"]),
            "viewer": issue_token(s, "viewer", "app", actor="root"),
        }


def test_list_tokens_shows_state_and_scopes_but_no_secret(db_url):
    secrets = _people(db_url)
    with session_scope(db_url) as s:
        revoke_token(s, "ops", "ci", actor="root")
        issue_token(s, "viewer", "short", actor="root",
                    expires_at=utcnow() + dt.timedelta(hours=1))
        # Lapse it without waiting: the expiry a clock would reach.
        s.execute(text("UPDATE apitoken SET expires_at = :t WHERE name = 'short'"),
                  {"t": utcnow() - dt.timedelta(seconds=1)})
    with session_scope(db_url) as s:
        rows = list_tokens(s, get_user(s, "root"))
        hashes = set(s.exec(select(ApiToken.token_hash)).all())
    got = {(r.user, r.name): (r.state, r.scopes) for r in rows}
    assert got == {
        ("ops", "ci"): ("revoked", ["infer"]),
        ("ops", "laptop"): ("active", ["infer", "feedback"]),
        ("root", "laptop"): ("active", ["infer", "feedback", "admin"]),
        ("viewer", "app"): ("active", ["infer"]),
        ("viewer", "short"): ("expired", ["infer"]),
    }
    assert [r.user for r in rows] == sorted(r.user for r in rows)
    dumped = " ".join(r.model_dump_json() for r in rows)
    for secret in secrets.values():
        assert secret not in dumped
    for digest in hashes:
        assert digest not in dumped
    assert set(rows[0].model_dump()) == {"name", "user", "scopes", "created_at", "expires_at",
                                         "revoked_at", "state"}
    with session_scope(db_url) as s:
        assert [r.name for r in list_tokens(s, get_user(s, "root"), "viewer")] == ["app", "short"]
        with pytest.raises(NotFound, match="no user named 'ghost'"):
            list_tokens(s, get_user(s, "root"), "ghost")


def test_only_an_admin_lists_tokens_or_disables_users(db_url):
    _people(db_url)
    with session_scope(db_url) as s:
        ops = get_user(s, "ops")
        with pytest.raises(PermissionDenied, match="has role 'operator'; 'admin' needs one of"):
            list_tokens(s, ops)
        with pytest.raises(PermissionDenied, match="has role 'operator'"):
            set_disabled(s, ops, "viewer", True)
        assert get_user(s, "viewer").disabled_at is None


def test_a_disabled_users_tokens_are_refused_everywhere_until_enabled(db_url):
    secrets = _people(db_url)
    with session_scope(db_url) as s:
        before = serving_tokens.token_set_version(s)
        served = {g.name for g in serving_tokens.load_grants(s) if g.user == "ops"}
        assert served == {"laptop", "ci"}
        doc = set_disabled(s, get_user(s, "root"), "ops", True)
        assert doc.name == "ops" and doc.disabled_at is not None
    with session_scope(db_url) as s:
        # Serving: the set moved on, and the user's tokens are out of it.
        assert serving_tokens.token_set_version(s) == before + 1
        assert all(g.user != "ops" for g in serving_tokens.load_grants(s))
        assert {g.user for g in serving_tokens.load_grants(s)} == {"root", "viewer"}
        # The CLI's authentication.
        for name in ("ops", "ops-ci"):
            with pytest.raises(PermissionDenied, match="user 'ops' is disabled"):
                authenticate(s, secrets[name])
        assert authenticate(s, secrets["viewer"]).name == "viewer"
        assert {t.state for t in list_tokens(s, get_user(s, "root"), "ops")} == {"disabled"}
        with pytest.raises(ConflictError, match="'ops' is disabled"):
            issue_token(s, "ops", "another", actor="root")
        with pytest.raises(ConflictError, match="already disabled"):
            set_disabled(s, get_user(s, "root"), "ops", True)
        assert [u.name for u in list_users(s) if u.disabled_at] == ["ops"]
    with session_scope(db_url) as s:
        set_disabled(s, get_user(s, "root"), "ops", False)
    with session_scope(db_url) as s:
        assert serving_tokens.token_set_version(s) == before + 2
        assert authenticate(s, secrets["ops"]).name == "ops"
        assert {g.name for g in serving_tokens.load_grants(s) if g.user == "ops"} == served
        with pytest.raises(ConflictError, match="already enabled"):
            set_disabled(s, get_user(s, "root"), "ops", False)
        actions = [r[0] for r in s.execute(text(
            "SELECT action FROM auditevent WHERE object_id = 'ops' ORDER BY id")).all()]
        assert actions[-2:] == ["user.disabled", "user.enabled"]
        assert audit.verify(s).ok


def test_an_admin_cannot_disable_themselves_nor_a_ghost(db_url):
    _people(db_url)
    with session_scope(db_url) as s:
        root = get_user(s, "root")
        with pytest.raises(ConflictError, match="'root' cannot disable themselves"):
            set_disabled(s, root, "root", True)
        with pytest.raises(NotFound, match="no user named 'ghost'"):
            set_disabled(s, root, "ghost", True)
        create_user(s, "root2", "admin", actor="root")
        set_disabled(s, root, "root2", True)
        assert get_user(s, "root2").disabled_at is not None


def test_tokens_authenticate_and_revoke(db_url):
    gw.people(db_url)
    with session_scope(db_url) as s:
        secret = issue_token(s, "ops", "laptop", actor="root")
    with session_scope(db_url) as s:
        assert authenticate(s, secret).name == "ops"
        with pytest.raises(PermissionDenied):
            authenticate(s, secret + "x")
        revoke_token(s, "ops", "laptop", actor="root")
    with session_scope(db_url) as s, pytest.raises(PermissionDenied):
        authenticate(s, secret)


def test_bad_role_and_duplicate_user(db_url):
    with session_scope(db_url) as s:
        with pytest.raises(InvalidInput, match="unknown role 'wizard'"):
            create_user(s, "a", "wizard", actor="root")
        create_user(s, "a", "viewer", actor="root")
        with pytest.raises(ConflictError, match="'a' already exists"):
            create_user(s, "a", "viewer", actor="root")
