"""Users, roles, API tokens and what each role may do.

A token is refused everywhere (CLI and serving) once it is revoked, past its expiry, or its
user is disabled. Revoking and disabling bump the serving token set in the same transaction,
so serving replicas drop the token within a poll interval (see `serving_tokens`).
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterable

from sqlmodel import Session, SQLModel, select

from appliance.errors import ConflictError, InvalidInput, NotFound
from appliance.governance import audit, serving_tokens

# The rules live in `access` (no ORM there); re-exported here, where callers look for them.
from appliance.governance.access import (
    PERMISSIONS,  # noqa: F401  (re-exported)
    TOKEN_PREFIX,
    check_token,
    hash_token,
    require,
)
from appliance.governance.operations import operation
from appliance.store.models import ApiToken, Role, User, utcnow


def _role(value: str) -> str:
    try:
        return Role(value).value
    except ValueError:
        raise InvalidInput(
            f"unknown role {value!r}; roles are {', '.join(r.value for r in Role)}"
        ) from None


def create_user(
    session: Session, name: str, role: str, *, actor: str, team: str = "default",
    email: str | None = None,
) -> User:
    """Create user `name` with `role` (viewer, operator, approver, admin) in `team`."""
    role = _role(role)
    if not name or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise InvalidInput(f"user name {name!r} must be letters, digits, '-', '_' or '.'")
    if session.exec(select(User).where(User.name == name)).first():
        raise ConflictError(f"user {name!r} already exists")
    user = User(name=name, role=role, team=team, email=email)
    session.add(user)
    session.flush()
    audit.record(session, actor, "user.created", "user", name, {"role": role, "team": team})
    return user


class UserPublic(SQLModel):
    """A user as the faces show it."""

    name: str
    role: str
    team: str
    created_at: dt.datetime
    disabled_at: dt.datetime | None


class TokenPublic(SQLModel):
    """A token as the faces show it: never its secret nor its hash.

    `scopes` are the effective ones (the role's defaults when none were given); `state` is
    active, revoked, expired or disabled (its user is).
    """

    name: str
    user: str
    scopes: list[str]
    created_at: dt.datetime
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None
    state: str


def get_user(session: Session, name: str) -> User:
    user = session.exec(select(User).where(User.name == name)).first()
    if user is None:
        raise NotFound(f"no user named {name!r}")
    return user


def issue_token(
    session: Session, user_name: str, token_name: str, *, actor: str,
    scopes: Iterable[str] | None = None, expires_at: dt.datetime | None = None,
) -> str:
    """Create a token for `user_name` and return its secret (shown once, stored hashed).

    Args:
        session: the open transaction.
        user_name: who the token acts as.
        token_name: a label for it (revoke by this name).
        actor: who issues it, for the audit log.
        scopes: serving scopes (`serving_tokens.SCOPES`; default None: the role's defaults).
        expires_at: when it stops working, timezone-aware (default None: never).
    """
    user = get_user(session, user_name)
    if user.disabled_at is not None:
        raise ConflictError(f"user {user_name!r} is disabled; `appliance users enable` first")
    stored = None if scopes is None else serving_tokens.check_scopes(scopes, user.role)
    if expires_at is not None:
        if expires_at.tzinfo is None:
            raise InvalidInput("a token's expiry needs a time zone (e.g. ...Z or +00:00)")
        if expires_at <= utcnow():
            raise InvalidInput(f"a token's expiry must lie in the future, got {expires_at}")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(user_id=user.id, name=token_name, token_hash=hash_token(secret),
                         scopes=stored, expires_at=expires_at, issued_by=actor))
    session.flush()
    serving_tokens.bump(session)
    audit.record(session, actor, "token.issued", "user", user_name, {
        "token": token_name,
        "scopes": serving_tokens.effective_scopes(stored, user.role),
        "expires_at": expires_at.isoformat() if expires_at else None,
    })
    return secret


def revoke_token(session: Session, user_name: str, token_name: str, *, actor: str) -> None:
    user = get_user(session, user_name)
    rows = session.exec(
        select(ApiToken).where(ApiToken.user_id == user.id, ApiToken.name == token_name,
                               ApiToken.revoked_at.is_(None))
    ).all()
    if not rows:
        raise NotFound(f"user {user_name!r} has no active token named {token_name!r}")
    for row in rows:
        row.revoked_at = utcnow()
        session.add(row)
    serving_tokens.bump(session)
    audit.record(session, actor, "token.revoked", "user", user_name, {"token": token_name})


def authenticate(session: Session, token: str) -> User:
    """The user owning `token`.

    Raises:
        PermissionDenied: the token is unknown, revoked or expired, or its user is disabled.
    """
    digest = hash_token(token)
    row = session.exec(select(ApiToken).where(ApiToken.token_hash == digest)).first()
    user = None if row is None else session.get(User, row.user_id)
    check_token(digest, row, user)
    return user


def _token_state(token: ApiToken, user: User, now: dt.datetime) -> str:
    if token.revoked_at is not None:
        return "revoked"
    if token.expires_at is not None and token.expires_at <= now:
        return "expired"
    return "disabled" if user.disabled_at is not None else "active"


def has_users(session: Session) -> bool:
    """Whether the store holds any user yet (`appliance init` makes the first)."""
    return session.exec(select(User)).first() is not None


def list_users(session: Session) -> list[UserPublic]:
    """Every user, by name (like every read, checked by the face: see `cli._context.reading`)."""
    rows = session.exec(select(User).order_by(User.name)).all()
    return [UserPublic(name=u.name, role=u.role, team=u.team, created_at=u.created_at,
                       disabled_at=u.disabled_at) for u in rows]


def list_tokens(session: Session, actor: User, user_name: str | None = None) -> list[TokenPublic]:
    """Tokens with their state, by user then creation (needs "admin").

    Args:
        session: the open transaction.
        actor: who asks; must be an admin (token names and scopes tell an attacker what to
            steal).
        user_name: only this user's tokens (default None: everyone's).

    Raises:
        PermissionDenied: `actor` is not an admin. NotFound: no user named `user_name`.
    """
    require(actor, "admin")
    query = select(ApiToken, User).where(ApiToken.user_id == User.id)
    if user_name is not None:
        query = query.where(User.id == get_user(session, user_name).id)
    now = utcnow()
    rows = session.exec(query.order_by(User.name, ApiToken.created_at, ApiToken.id)).all()
    return [
        TokenPublic(
            name=t.name, user=u.name,
            scopes=serving_tokens.effective_scopes(t.scopes, u.role),
            created_at=t.created_at, expires_at=t.expires_at, revoked_at=t.revoked_at,
            state=_token_state(t, u, now),
        )
        for t, u in rows
    ]


@operation("users.set_disabled")
def set_disabled(session: Session, actor: User, name: str, disabled: bool) -> UserPublic:
    """Disable user `name` (every token of theirs refused, CLI and serving) or enable them.

    Serving replicas drop a disabled user's tokens when they next poll the token set, whose
    version this bumps in the same transaction.

    Args:
        session: the open transaction.
        actor: who does it; must be an admin.
        name: the user to disable or enable.
        disabled: True to disable, False to enable again.

    Raises:
        PermissionDenied: `actor` is not an admin. NotFound: no such user.
        ConflictError: the user already is in that state, or an admin disables themselves
            (which could leave no one able to enable them).
    """
    require(actor, "admin")
    user = get_user(session, name)
    if disabled and user.id == actor.id:
        raise ConflictError(f"user {name!r} cannot disable themselves; ask another admin")
    if (user.disabled_at is not None) == disabled:
        raise ConflictError(f"user {name!r} is already {'disabled' if disabled else 'enabled'}")
    user.disabled_at = utcnow() if disabled else None
    session.add(user)
    session.flush()
    serving_tokens.bump(session)
    audit.record(session, actor.name, "user.disabled" if disabled else "user.enabled", "user",
                 name, {})
    return UserPublic(name=user.name, role=user.role, team=user.team,
                      created_at=user.created_at, disabled_at=user.disabled_at)


class NewUserPublic(SQLModel):
    """A user just created, with the secret of their first token (shown this once)."""

    name: str
    role: str
    team: str
    token: str


class IssuedTokenPublic(SQLModel):
    """A token just issued: whose, its label, its secret (shown this once), its scopes (as
    `tokens list` shows them), expiry."""

    user: str
    name: str
    token: str
    scopes: list[str]
    expires_at: dt.datetime | None


@operation("users.add")
def add_user(session: Session, actor: User, name: str, role: str, *,
             team: str = "default") -> NewUserPublic:
    """Create user `name` and issue their first token, named "default" (admins only).

    Args:
        session: the open transaction (both rows and both audit events land in it).
        actor: who does it; must be an admin.
        name: the new user's name.
        role: viewer, operator, approver or admin.
        team: the team their costs and models belong to (default "default").

    Raises:
        PermissionDenied: `actor` is not an admin. InvalidInput: an unknown role.
        ConflictError: the name is taken.
    """
    require(actor, "admin")
    user = create_user(session, name, role, actor=actor.name, team=team)
    secret = issue_token(session, name, "default", actor=actor.name)
    return NewUserPublic(name=user.name, role=user.role, team=user.team, token=secret)


@operation("tokens.issue")
def grant_token(session: Session, actor: User, user_name: str, token_name: str, *,
                scopes: Iterable[str] | None = None,
                expires_at: dt.datetime | None = None) -> IssuedTokenPublic:
    """Issue a token for `user_name` (admins only); arguments and errors as `issue_token`,
    plus PermissionDenied when `actor` is not an admin."""
    require(actor, "admin")
    scopes = list(scopes) if scopes else None
    secret = issue_token(session, user_name, token_name, actor=actor.name, scopes=scopes,
                         expires_at=expires_at)
    # As `tokens list` shows them: validated, sorted, deduplicated, or the role's defaults.
    role = get_user(session, user_name).role
    stored = None if scopes is None else serving_tokens.check_scopes(scopes, role)
    return IssuedTokenPublic(user=user_name, name=token_name, token=secret,
                             scopes=serving_tokens.effective_scopes(stored, role),
                             expires_at=expires_at)


@operation("tokens.revoke")
def withdraw_token(session: Session, actor: User, user_name: str, token_name: str) -> None:
    """Revoke `user_name`'s token `token_name` (admins only; serving drops it within a poll).

    Raises:
        PermissionDenied: `actor` is not an admin. NotFound: no such user or active token.
    """
    require(actor, "admin")
    revoke_token(session, user_name, token_name, actor=actor.name)


def authenticate_token(session: Session, token: str) -> ApiToken:
    """The token row behind `token`, after every check `authenticate` makes.

    Four-eyes checks need it: who issued the token (`ApiToken.issued_by`) may be the one
    really acting, not the user it names.

    Raises:
        PermissionDenied: as `authenticate`.
    """
    authenticate(session, token)
    return session.exec(select(ApiToken).where(ApiToken.token_hash == hash_token(token))).one()
