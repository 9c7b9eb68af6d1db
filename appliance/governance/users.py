"""Users, roles, API tokens and what each role may do."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from collections.abc import Iterable

from sqlmodel import Session, select

from appliance.errors import ConflictError, InvalidInput, NotFound, PermissionDenied
from appliance.governance import audit, serving_tokens
from appliance.store.models import ApiToken, Role, User, utcnow

TOKEN_PREFIX = "apl_"

# Approvers approve; they do not operate, so one person cannot both build and bless a model.
PERMISSIONS: dict[str, frozenset[str]] = {
    "read": frozenset({"viewer", "operator", "approver", "admin"}),
    "operate": frozenset({"operator", "admin"}),
    "approve": frozenset({"approver", "admin"}),
    "admin": frozenset({"admin"}),
}


def hash_token(token: str) -> str:
    """sha256 hex of a token: the only form in which tokens are stored."""
    return hashlib.sha256(token.encode()).hexdigest()


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
        "scopes": stored or list(serving_tokens.default_scopes(user.role)),
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
    """The user owning `token`; PermissionDenied for an unknown, revoked or expired token."""
    digest = hash_token(token)
    row = session.exec(select(ApiToken).where(ApiToken.token_hash == digest)).first()
    if row is None or not hmac.compare_digest(row.token_hash, digest) or row.revoked_at:
        raise PermissionDenied("the API token is unknown or revoked")
    if row.expires_at is not None and row.expires_at <= utcnow():
        raise PermissionDenied(f"the API token {row.name!r} expired at {row.expires_at}")
    return session.get(User, row.user_id)


def authenticate_token(session: Session, token: str) -> ApiToken:
    """The token row behind `token`, after every check `authenticate` makes.

    Four-eyes checks need it: who issued the token (`ApiToken.issued_by`) may be the one
    really acting, not the user it names.

    Raises:
        PermissionDenied: as `authenticate`.
    """
    authenticate(session, token)
    return session.exec(select(ApiToken).where(ApiToken.token_hash == hash_token(token))).one()


def require(user: User, permission: str) -> None:
    """Raise PermissionDenied unless `user`'s role grants `permission`."""
    if user.role not in PERMISSIONS[permission]:
        allowed = ", ".join(sorted(PERMISSIONS[permission]))
        raise PermissionDenied(
            f"user {user.name!r} has role {user.role!r}; {permission!r} needs one of: {allowed}"
        )
