"""Serving tokens: scopes, expiry, and the versioned token set replicas poll (no Ray)."""

from __future__ import annotations

import datetime as dt

import pytest

from appliance.errors import InvalidInput
from appliance.governance import serving_tokens
from appliance.governance.users import create_user, hash_token, issue_token, revoke_token
from appliance.store import session_scope, utcnow
from cluster.serve._auth import TokenPoller, TokenTable, token_hash_of


def _people(url):
    with session_scope(url) as s:
        for name, role in [("root", "admin"), ("ops", "operator"), ("app", "viewer"),
                           ("risk", "approver")]:
            create_user(s, name, role, actor="root")


def test_token_hash_of_reads_only_bearer_headers():
    assert token_hash_of("Bearer abc") == hash_token("abc")
    assert token_hash_of("bearer  abc ") == hash_token("abc")
    for header in [None, "", "Bearer", "Bearer  ", "Basic abc", "abc"]:
        assert token_hash_of(header) is None


def test_role_defaults_keep_labels_from_viewers():
    assert serving_tokens.default_scopes("viewer") == ("infer",)
    assert serving_tokens.default_scopes("approver") == ("infer",)
    assert set(serving_tokens.default_scopes("operator")) == {"infer", "feedback"}
    assert set(serving_tokens.default_scopes("admin")) == set(serving_tokens.SCOPES)


@pytest.mark.parametrize(
    ("scopes", "role", "message"),
    [(["infer", "write"], "admin", "unknown scope"), ([], "admin", "at least one scope"),
     (["admin"], "operator", "role admin")],
)
def test_bad_scopes_are_refused(scopes, role, message):
    with pytest.raises(InvalidInput, match=message):
        serving_tokens.check_scopes(scopes, role)


def test_table_answers_401_403_and_none():
    now = utcnow()
    grants = [
        serving_tokens.TokenGrant("h-view", "app", "t", frozenset({"infer"}), None),
        serving_tokens.TokenGrant("h-old", "ops", "old", frozenset({"infer"}),
                                  now - dt.timedelta(seconds=1)),
        serving_tokens.TokenGrant("h-soon", "ops", "soon", frozenset({"infer", "feedback"}),
                                  now + dt.timedelta(seconds=60)),
    ]
    table = TokenTable(3, grants)
    assert table.check("h-view", "infer", now) is None
    denied = table.check("h-view", "feedback", now)
    assert denied.status == 403 and "lacks scope 'feedback'" in denied.message
    assert table.check(None, "infer", now).status == 401
    assert table.check("h-nope", "infer", now).status == 401
    assert "expired" in table.check("h-old", "infer", now).message
    # Expiry is checked at request time, not only when the table is loaded.
    assert table.check("h-soon", "feedback", now) is None
    later = now + dt.timedelta(seconds=61)
    assert table.check("h-soon", "feedback", later).status == 401
    assert TokenTable().check("h-view", "infer", now).status == 503


def test_poller_reloads_when_a_token_changes(db_url):
    _people(db_url)
    clock = [0.0]
    poller = TokenPoller(db_url, clock=lambda: clock[0])
    with session_scope(db_url) as s:
        viewer = issue_token(s, "app", "app-1", actor="root")
        labeller = issue_token(s, "app", "labels", actor="root", scopes=["infer", "feedback"])
        ops = issue_token(s, "ops", "ops-1", actor="root")
    table = poller.poll(TokenTable())
    now = utcnow()
    assert table.check(hash_token(viewer), "infer", now) is None
    assert table.check(hash_token(viewer), "feedback", now).status == 403
    assert table.check(hash_token(labeller), "feedback", now) is None
    assert table.check(hash_token(ops), "feedback", now) is None
    # Nothing changed: no reload (one cheap query).
    assert poller.poll(table) is None
    with session_scope(db_url) as s:
        revoke_token(s, "ops", "ops-1", actor="root")
    fresh = poller.poll(table)
    assert fresh is not None and fresh.version > table.version
    assert fresh.check(hash_token(ops), "infer", utcnow()).status == 401
    assert fresh.check(hash_token(viewer), "infer", utcnow()) is None
    # A full reload comes round even when the version did not move.
    clock[0] += 61
    assert poller.poll(fresh) is not None


def test_issue_token_validates_scope_and_expiry(db_url):
    _people(db_url)
    with session_scope(db_url) as s:
        with pytest.raises(InvalidInput, match="role admin"):
            issue_token(s, "ops", "x", actor="root", scopes=["admin"])
        with pytest.raises(InvalidInput, match="future"):
            issue_token(s, "ops", "x", actor="root", expires_at=utcnow() - dt.timedelta(1))
        with pytest.raises(InvalidInput, match="time zone"):
            issue_token(s, "ops", "x", actor="root", expires_at=dt.datetime(2099, 1, 1))
        issue_token(s, "ops", "soon", actor="root", expires_at=utcnow() + dt.timedelta(hours=1))
        grants = serving_tokens.load_grants(s)
        assert [g.name for g in grants] == ["soon"]
        assert grants[0].expires_at is not None
        # Expired tokens are left out of what replicas load.
        assert serving_tokens.load_grants(s, now=utcnow() + dt.timedelta(hours=2)) == []


def test_grant_documents_round_trip():
    grant = serving_tokens.TokenGrant("h", "u", "n", frozenset({"infer"}),
                                      dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc))
    assert serving_tokens.TokenGrant.from_doc(grant.to_doc()) == grant
