"""What a token may do at the serving endpoint (`appliance.governance.serving_tokens`): scopes
checked against the holder's role, the grants replicas load (revoked and expired tokens left
out, a role's defaults filled in), and the version every token change moves; on SQLite and
PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest

from appliance.errors import InvalidInput
from appliance.governance import serving_tokens
from appliance.governance.serving_tokens import (
    TokenGrant,
    check_scopes,
    default_scopes,
    effective_scopes,
    load_grants,
    token_set_version,
)
from appliance.governance.users import create_user, issue_token, revoke_token
from appliance.store import session_scope, utcnow

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.timezone.utc)


def test_scopes_are_checked_against_the_role():
    assert check_scopes(["infer", "feedback", "infer"], "operator") == ["feedback", "infer"]
    assert check_scopes(["admin"], "admin") == ["admin"]
    with pytest.raises(InvalidInput, match=r"unknown scope\(s\) \['delete'\]"):
        check_scopes(["infer", "delete"], "admin")
    with pytest.raises(InvalidInput, match="needs at least one scope"):
        check_scopes([], "admin")
    with pytest.raises(InvalidInput, match="scope 'admin' needs a user with role admin, not "
                                           "'operator'"):
        check_scopes(["admin"], "operator")
    # A viewer's token cannot post labels unless given the scope.
    assert default_scopes("viewer") == ("infer",) and default_scopes("ghost") == ()
    assert "feedback" in default_scopes("operator")
    # What a token may do: what it was given, else its role's defaults.
    assert effective_scopes(["feedback"], "viewer") == ["feedback"]
    assert effective_scopes(None, "viewer") == ["infer"]


def test_grants_round_trip_through_their_documents():
    grant = TokenGrant("h", "ops", "laptop", frozenset({"infer", "feedback"}), NOW)
    doc = grant.to_doc()
    assert doc["scopes"] == ["feedback", "infer"] and doc["expires_at"] == NOW.isoformat()
    assert TokenGrant.from_doc(doc) == grant
    forever = TokenGrant("h", "ops", "ci", frozenset({"infer"}), None)
    assert TokenGrant.from_doc(forever.to_doc()) == forever


def test_replicas_load_live_tokens_only_and_every_change_moves_the_version(db_url):
    now = utcnow()
    later = now + dt.timedelta(hours=2)  # "old" has expired, "soon" not yet
    with session_scope(db_url) as s:
        assert token_set_version(s) == 0
        create_user(s, "root", "admin", actor="root")
        create_user(s, "ops", "operator", actor="root")
        laptop = issue_token(s, "ops", "laptop", actor="root")
        issue_token(s, "ops", "ci", actor="root", scopes=["infer"])
        issue_token(s, "ops", "old", actor="root", expires_at=now + dt.timedelta(hours=1))
        issue_token(s, "ops", "soon", actor="root", expires_at=now + dt.timedelta(hours=3))
        issued = token_set_version(s)
        assert issued == 4
    with session_scope(db_url) as s:
        grants = {g.name: g for g in load_grants(s, now=later)}
        assert sorted(grants) == ["ci", "laptop", "soon"]
        assert grants["laptop"].scopes == frozenset(default_scopes("operator"))
        assert grants["ci"].scopes == frozenset({"infer"})
        assert laptop not in {g.token_hash for g in grants.values()}  # hashes, never secrets
        assert {g.name for g in load_grants(s, now=later + dt.timedelta(hours=2))} == {
            "ci", "laptop"}
        revoke_token(s, "ops", "laptop", actor="root")
    with session_scope(db_url) as s:
        assert token_set_version(s) == issued + 1
        assert "laptop" not in {g.name for g in load_grants(s, now=later)}
        assert serving_tokens.bump(s) == issued + 2
