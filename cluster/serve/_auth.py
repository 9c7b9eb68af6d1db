"""Bearer tokens at the serving door: who may call, with which scope, refreshed without redeploy.

The ingress holds a `TokenTable` (the grants as last loaded) and a `TokenPoller` that asks the
metadata store for the token set's version about once a second and reloads the grants only
when it moved (`appliance.governance.serving_tokens`). A request costs one dict look-up and a
clock read, never a database round trip; a revocation, a new token or an expiry takes effect
within a poll interval. When the store cannot be reached the last table stays in force (a
database outage must not take inference down), and expiry is still checked locally.

Answers: 401 for no token or one that is unknown, revoked or expired (``WWW-Authenticate:
Bearer``); 403 for a valid token without the route's scope; 503 while no table was ever
loaded.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import NamedTuple

from sqlmodel import Session

from appliance.governance.serving_tokens import TokenGrant, load_grants, token_set_version
from appliance.governance.users import hash_token
from appliance.store import get_engine
from appliance.store.models import TokenSet

logger = logging.getLogger("ray.serve")

# A full reload this often even when the version did not move: catches rows edited by hand.
_FULL_RELOAD_S = 60.0


class Denial(NamedTuple):
    """Why a request was refused: an HTTP status and a message naming what was wrong."""

    status: int
    message: str


def token_hash_of(authorization: str | None) -> str | None:
    """sha256 hex of the bearer token in an ``Authorization`` header value, or None."""
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return hash_token(token)


class TokenTable:
    """The usable tokens as of one token-set version.

    Args:
        version: the token set's version these grants were loaded at (-1: never loaded).
        grants: the unrevoked, unexpired tokens at load time.
    """

    def __init__(self, version: int = -1, grants: list[TokenGrant] | None = None) -> None:
        self.version = version
        self._grants = {g.token_hash: g for g in grants or []}

    @property
    def loaded(self) -> bool:
        return self.version >= 0

    def __len__(self) -> int:
        return len(self._grants)

    def check(self, token_hash: str | None, scope: str, now: dt.datetime) -> Denial | None:
        """None when the token may use `scope` at `now`; otherwise why not."""
        if not self.loaded:
            return Denial(503, "the token set has not been loaded yet; retry in a moment")
        if token_hash is None:
            return Denial(401, "missing bearer token: send 'Authorization: Bearer <token>'")
        grant = self._grants.get(token_hash)
        if grant is None:
            return Denial(401, "the bearer token is unknown, revoked or expired")
        if grant.expires_at is not None and grant.expires_at <= now:
            return Denial(401, f"the bearer token {grant.name!r} expired at "
                               f"{grant.expires_at.isoformat()}")
        if scope not in grant.scopes:
            return Denial(403, f"token {grant.name!r} of user {grant.user!r} lacks scope "
                               f"{scope!r} (it has: {', '.join(sorted(grant.scopes))})")
        return None


class TokenPoller:
    """Loads a fresh `TokenTable` from the metadata store when the token set changed.

    Args:
        db_url: the metadata store's SQLAlchemy URL.
        clock: monotonic seconds (default ``time.monotonic``).
    """

    def __init__(self, db_url: str, clock: Callable[[], float] = time.monotonic) -> None:
        self._db_url = db_url
        self._clock = clock
        self._loaded_at = float("-inf")

    def poll(self, current: TokenTable) -> TokenTable | None:
        """A new table when the version moved (or a full reload is due), else None.

        Blocking (one small query, two when reloading): call it off the event loop.
        """
        engine = get_engine(self._db_url)
        version = _version(engine)
        due = self._clock() - self._loaded_at >= _FULL_RELOAD_S
        if version == current.version and not due:
            return None
        with Session(engine) as session:
            # Read again with the grants, in one transaction: a change between the two reads
            # must not be stored under the older version.
            version = token_set_version(session)
            grants = load_grants(session)
        self._loaded_at = self._clock()
        if version != current.version:
            logger.info("token set version %d loaded: %d usable token(s)", version, len(grants))
        return TokenTable(version, grants)


def _version(engine) -> int:
    """The token set's version, read on a pooled DBAPI connection outside the ORM.

    Every replica asks about once a second: an ORM session would open a transaction (on
    SQLite a ``BEGIN IMMEDIATE``, which takes the write lock) for one integer, and cost the
    replica more CPU than the requests it serves at a low rate.
    """
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        try:
            cursor.execute(_VERSION_SQL)
            row = cursor.fetchone()
        finally:
            cursor.close()
        raw.rollback()  # PostgreSQL opened a read transaction; SQLite autocommits
    finally:
        raw.close()  # back to the pool
    return int(row[0]) if row else 0


_VERSION_SQL = f"SELECT version FROM {TokenSet.__tablename__} WHERE id = 1"
