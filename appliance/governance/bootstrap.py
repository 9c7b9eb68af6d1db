"""The first admin of an empty store, and the token file that lets this machine act as them.

`initialise` is the one operation with no acting principal: there is nobody to act yet. It
refuses a store that already has users, so it cannot be used to mint a second admin.
"""

from __future__ import annotations

import os

from sqlmodel import SQLModel

from appliance.config import Config
from appliance.errors import ConflictError
from appliance.governance.access import saved_token_path
from appliance.governance.operations import operation
from appliance.governance.users import create_user, has_users, issue_token
from appliance.store import session_scope
from appliance.store.database import redact


class InitPublic(SQLModel):
    """What `initialise` set up: where, the admin's name, and where their token is saved."""

    home: str
    db_url: str
    artifacts: str
    admin: str
    token_file: str


@operation("init")
def initialise(cfg: Config, admin: str = "admin", team: str = "platform") -> InitPublic:
    """Create the artifact folder, the first admin and their token, saved 0600 under home.

    The store's schema must be current (the caller migrates). The user, the token and both
    audit events land in one transaction; the file is written after it commits.

    Args:
        cfg: the configuration (store, artifacts, home).
        admin: the first admin's name (default "admin").
        team: their team (default "platform").

    Raises:
        ConflictError: the store already has users.
    """
    cfg.artifacts.mkdir(parents=True, exist_ok=True)
    # Before the transaction: the token file is written after it commits, and a home that
    # does not exist then (artifacts and store elsewhere) would leave an admin nobody can act
    # as, and a store that refuses a second `init`.
    cfg.home.mkdir(parents=True, exist_ok=True)
    with session_scope(cfg.db_url) as session:
        if has_users(session):
            raise ConflictError(
                f"the store at {redact(cfg.db_url)!r} already has users; create more with "
                "`appliance users create`"
            )
        create_user(session, admin, "admin", actor=admin, team=team)
        secret = issue_token(session, admin, "init", actor=admin)
    path = saved_token_path(cfg)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secret)
    return InitPublic(home=str(cfg.home), db_url=redact(cfg.db_url),
                      artifacts=str(cfg.artifacts), admin=admin, token_file=str(path))
