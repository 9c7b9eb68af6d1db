"""What every command needs: the configuration, a migrated store, and the acting user."""

from __future__ import annotations

import os
from pathlib import Path

from appliance.config import Config, load_config
from appliance.errors import PermissionDenied
from appliance.governance.users import authenticate, authenticate_token, require
from appliance.store import migrate, session_scope
from appliance.store.models import ApiToken, User

_migrated: set[str] = set()


def config() -> Config:
    """Load the configuration and make sure the store's schema is current."""
    cfg = load_config()
    if cfg.db_url not in _migrated:
        migrate(cfg.db_url)
        _migrated.add(cfg.db_url)
    return cfg


def token_file(cfg: Config) -> Path:
    return cfg.home / "token"


def acting_user(cfg: Config, token: str | None = None) -> User:
    """The user behind `token`, ``APPLIANCE_TOKEN``, or the token `appliance init` saved."""
    token = _secret(cfg, token)
    with session_scope(cfg.db_url) as session:
        return authenticate(session, token)


def acting_token(cfg: Config, token: str | None = None) -> tuple[User, ApiToken]:
    """The acting user and the token row they act with (approvals check who issued it)."""
    token = _secret(cfg, token)
    with session_scope(cfg.db_url) as session:
        row = authenticate_token(session, token)
        return session.get(User, row.user_id), row


def _secret(cfg: Config, token: str | None) -> str:
    """`token`, ``APPLIANCE_TOKEN``, or the token `appliance init` saved."""
    token = token or os.environ.get("APPLIANCE_TOKEN")
    if not token and token_file(cfg).is_file():
        token = token_file(cfg).read_text().strip()
    if not token:
        raise PermissionDenied(
            "no API token: set APPLIANCE_TOKEN, pass --token, or run `appliance init` first"
        )
    return token


def acting(token: str | None, permission: str) -> tuple[Config, User]:
    """The configuration and the acting user, who must hold `permission` (see PERMISSIONS)."""
    cfg = config()
    user = acting_user(cfg, token)
    require(user, permission)
    return cfg, user
