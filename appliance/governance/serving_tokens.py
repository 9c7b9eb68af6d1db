"""What a bearer token may do at the serving endpoint, and the versioned set replicas load.

Scopes: ``infer`` (call models), ``feedback`` (post ground-truth labels, which drive accuracy
alerts and retraining, so a viewer does not get it by default) and ``admin`` (the model
repository routes). A token stores its scopes, or none to take its role's defaults; `admin`
can only be held by an admin.

Serving never queries the database per request. Every change to a token bumps
``TokenSet.version`` in the same transaction; each replica polls that one number about once a
second and reloads the grants when it moved, and checks expiry itself on every request. A
revocation, a disabled user (whose tokens drop out of the set) or a lapsed expiry is therefore
refused everywhere within a poll interval.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable

from sqlmodel import Session, select

from appliance.errors import InvalidInput
from appliance.store.models import ApiToken, TokenSet, User, utcnow

SCOPES = ("infer", "feedback", "admin")

_ROLE_DEFAULTS: dict[str, tuple[str, ...]] = {
    "viewer": ("infer",),
    "approver": ("infer",),
    "operator": ("infer", "feedback"),
    "admin": ("infer", "feedback", "admin"),
}


@dataclasses.dataclass(frozen=True)
class TokenGrant:
    """One usable token as serving sees it: its hash, who holds it, what it may do, until when."""

    token_hash: str
    user: str
    name: str
    scopes: frozenset[str]
    expires_at: dt.datetime | None

    def to_doc(self) -> dict:
        return {
            "token_hash": self.token_hash, "user": self.user, "name": self.name,
            "scopes": sorted(self.scopes),
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
        }

    @classmethod
    def from_doc(cls, doc: dict) -> TokenGrant:
        expires = doc.get("expires_at")
        return cls(doc["token_hash"], doc["user"], doc["name"], frozenset(doc["scopes"]),
                   dt.datetime.fromisoformat(expires) if expires else None)


def default_scopes(role: str) -> tuple[str, ...]:
    """The scopes a token of `role` gets when none are given."""
    return _ROLE_DEFAULTS.get(role, ())


def effective_scopes(stored: Iterable[str] | None, role: str) -> list[str]:
    """What a token of a user with `role` may do: its `stored` scopes, else the role's."""
    return list(stored if stored is not None else default_scopes(role))


def check_scopes(scopes: Iterable[str], role: str) -> list[str]:
    """`scopes` validated for a token of a user with `role`, sorted and deduplicated.

    Raises:
        InvalidInput: an unknown scope, none at all, or ``admin`` for a user who is not an admin.
    """
    wanted = sorted(set(scopes))
    unknown = [s for s in wanted if s not in SCOPES]
    if unknown:
        raise InvalidInput(f"unknown scope(s) {unknown}; scopes are {', '.join(SCOPES)}")
    if not wanted:
        raise InvalidInput(f"a token needs at least one scope: {', '.join(SCOPES)}")
    if "admin" in wanted and role != "admin":
        raise InvalidInput(f"scope 'admin' needs a user with role admin, not {role!r}")
    return wanted


def bump(session: Session) -> int:
    """Move the token set's version on (call in the transaction that changes a token)."""
    row = session.get(TokenSet, 1)
    if row is None:
        row = TokenSet(id=1, version=0)
    row.version += 1
    row.updated_at = utcnow()
    session.add(row)
    session.flush()
    return row.version


def token_set_version(session: Session) -> int:
    """The token set's current version (0 before any token was issued)."""
    row = session.get(TokenSet, 1)
    return row.version if row else 0


def load_grants(session: Session, now: dt.datetime | None = None) -> list[TokenGrant]:
    """Every token that is neither revoked nor expired at `now` (default: now), of a user who
    is not disabled."""
    now = now or utcnow()
    rows = session.exec(
        select(ApiToken, User).where(ApiToken.user_id == User.id, ApiToken.revoked_at.is_(None),
                                     User.disabled_at.is_(None))
    ).all()
    grants = []
    for token, user in rows:
        if token.expires_at is not None and token.expires_at <= now:
            continue
        scopes = token.scopes if token.scopes is not None else default_scopes(user.role)
        grants.append(TokenGrant(token.token_hash, user.name, token.name, frozenset(scopes),
                                 token.expires_at))
    return grants
