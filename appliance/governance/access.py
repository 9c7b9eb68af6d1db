"""What each role may do, and when a token is refused: the rules every face checks first.

Kept free of the ORM so that a read command can check its token through SQLAlchemy Core
(`principal_for`) without building the table classes; `users.authenticate`, the ORM path the
actions take, applies the same `check_token`, so both refuse the same tokens with the same words.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
from pathlib import Path
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.engine import Connection

from appliance.config import Config
from appliance.errors import PermissionDenied
from appliance.store.clock import as_utc, utcnow
from appliance.store.core_tables import api_token, users

TOKEN_PREFIX = "apl_"

# Approvers approve; they do not operate, so one person cannot both build and bless a model.
PERMISSIONS: dict[str, frozenset[str]] = {
    "read": frozenset({"viewer", "operator", "approver", "admin"}),
    "operate": frozenset({"operator", "admin"}),
    "approve": frozenset({"approver", "admin"}),
    "admin": frozenset({"admin"}),
}


def saved_token_path(cfg: Config) -> Path:
    """Where `appliance init` saves the admin's token (read when no other token is given)."""
    return cfg.home / "token"


class _Actor(Protocol):
    name: str
    role: str


class _StoredToken(Protocol):
    name: str
    token_hash: str
    revoked_at: dt.datetime | None
    expires_at: dt.datetime | None


class _TokenOwner(Protocol):
    name: str
    disabled_at: dt.datetime | None


@dataclasses.dataclass(frozen=True)
class Principal:
    """Who a checked token acts as: the user's name and role (what `require` looks at)."""

    name: str
    role: str


def hash_token(token: str) -> str:
    """sha256 hex of a token: the only form in which tokens are stored."""
    return hashlib.sha256(token.encode()).hexdigest()


def require(user: _Actor, permission: str) -> None:
    """Raise PermissionDenied unless `user`'s role grants `permission`."""
    if user.role not in PERMISSIONS[permission]:
        allowed = ", ".join(sorted(PERMISSIONS[permission]))
        raise PermissionDenied(
            f"user {user.name!r} has role {user.role!r}; {permission!r} needs one of: {allowed}"
        )


def check_token(digest: str, token: _StoredToken | None, user: _TokenOwner | None) -> None:
    """Raise PermissionDenied unless the token stored under `digest` may act.

    Args:
        digest: `hash_token` of the secret presented.
        token: the token row found under `digest` (None: none was).
        user: the row of the user it belongs to.

    Raises:
        PermissionDenied: the token is unknown or revoked, or expired, or its user is disabled.
    """
    if (token is None or user is None or not hmac.compare_digest(token.token_hash, digest)
            or token.revoked_at):
        raise PermissionDenied("the API token is unknown or revoked")
    if token.expires_at is not None and token.expires_at <= utcnow():
        raise PermissionDenied(f"the API token {token.name!r} expired at {token.expires_at}")
    if user.disabled_at is not None:
        raise PermissionDenied(f"user {user.name!r} is disabled; their tokens are refused")


@dataclasses.dataclass(frozen=True)
class _TokenRow:
    name: str
    token_hash: str
    revoked_at: dt.datetime | None
    expires_at: dt.datetime | None
    user_id: int


@dataclasses.dataclass(frozen=True)
class _UserRow:
    name: str
    role: str
    disabled_at: dt.datetime | None


def principal_for(conn: Connection, token: str) -> Principal:
    """The user owning `token`, read through SQLAlchemy Core on `conn`; what
    `users.authenticate` answers, without the ORM.

    Raises:
        PermissionDenied: as `check_token`.
    """
    digest = hash_token(token)
    t = conn.execute(select(api_token.c.name, api_token.c.token_hash, api_token.c.revoked_at,
                            api_token.c.expires_at, api_token.c.user_id)
                     .where(api_token.c.token_hash == digest)).first()
    stored = owner = None
    if t is not None:
        stored = _TokenRow(t.name, t.token_hash, as_utc(t.revoked_at), as_utc(t.expires_at),
                           t.user_id)
        u = conn.execute(select(users.c.name, users.c.role, users.c.disabled_at)
                         .where(users.c.id == stored.user_id)).first()
        owner = None if u is None else _UserRow(u.name, u.role, as_utc(u.disabled_at))
    check_token(digest, stored, owner)
    return Principal(name=owner.name, role=owner.role)
