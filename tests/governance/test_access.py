"""The token rules: the Core check every read makes (`principal_for`) and the ORM one every
action makes (`users.authenticate`) accept and refuse the same tokens, with the same words."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlmodel import select

from appliance.errors import PermissionDenied
from appliance.governance.access import Principal, hash_token, principal_for, require
from appliance.governance.users import authenticate, create_user, issue_token, revoke_token
from appliance.store import get_engine, session_scope, utcnow
from appliance.store.models import ApiToken, User


def _core(url: str, secret: str) -> Principal:
    with get_engine(url).connect() as conn:
        return principal_for(conn, secret)


def _orm(url: str, secret: str) -> User:
    with session_scope(url) as s:
        return authenticate(s, secret)


def _set(url: str, model, where, **values) -> None:
    with session_scope(url) as s:
        row = s.exec(select(model).where(where)).one()
        for key, value in values.items():
            setattr(row, key, value)
        s.add(row)


@pytest.fixture
def tokens(db_url):
    """Secrets of four viewers' tokens: one fine, one revoked, one expired, one of a disabled
    user."""
    with session_scope(db_url) as s:
        for name in ("val", "rev", "exp", "dis"):
            create_user(s, name, "viewer", actor="test")
        secrets = {name: issue_token(s, name, "t", actor="test",
                                     expires_at=utcnow() + dt.timedelta(days=1))
                   for name in ("val", "rev", "exp", "dis")}
        revoke_token(s, "rev", "t", actor="test")
    _set(db_url, ApiToken, ApiToken.token_hash == hash_token(secrets["exp"]),
         expires_at=utcnow() - dt.timedelta(minutes=1))
    _set(db_url, User, User.name == "dis", disabled_at=utcnow())
    return secrets


def test_a_good_token_is_its_user_either_way(db_url, tokens):
    assert _core(db_url, tokens["val"]) == Principal(name="val", role="viewer")
    user = _orm(db_url, tokens["val"])
    assert (user.name, user.role) == ("val", "viewer")


@pytest.mark.parametrize(("who", "words"), [
    ("rev", "the API token is unknown or revoked"),
    ("exp", "the API token 't' expired at "),
    ("dis", "user 'dis' is disabled; their tokens are refused"),
    ("nobody", "the API token is unknown or revoked"),
])
def test_a_bad_token_is_refused_the_same_way_either_way(db_url, tokens, who, words):
    secret = tokens.get(who, "apl_not-a-token")
    with pytest.raises(PermissionDenied) as core:
        _core(db_url, secret)
    with pytest.raises(PermissionDenied) as orm:
        _orm(db_url, secret)
    assert str(core.value) == str(orm.value)
    assert str(core.value).startswith(words), str(core.value)


def test_require_names_the_role_and_who_may():
    require(Principal("val", "viewer"), "read")
    with pytest.raises(PermissionDenied, match="has role 'viewer'; 'operate' needs one of: "
                                               "admin, operator"):
        require(Principal("val", "viewer"), "operate")
