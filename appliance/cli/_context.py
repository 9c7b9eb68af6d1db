"""What every command needs: the configuration, a migrated store, and the acting user.

The CLI authenticates (a token becomes the user it belongs to); the library authorizes: each
operation checks the permission it needs itself (`appliance.governance.operations`), so the
console and the HTTP routes get the same refusals. Reads are checked here (`reading`).

The acting user's token comes from, first found: ``--token -`` (stdin), ``--token-file PATH``
(``-``: stdin), ``APPLIANCE_TOKEN``, or the file `appliance init` saved. Never from the
command line itself: a secret there shows in `ps`, in /proc and in shell history. The two
options' callbacks turn what was passed into the secret, so a command hands
``token or token_file`` to `acting` or `reading`.

Reads need a token whose user holds "read" when ``require_token_for_reads`` is on (a cluster's
default); otherwise a read with no token at all still runs, and a token that is given is
checked all the same.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from appliance.config import Config, load_config
from appliance.errors import InvalidInput, PermissionDenied
from appliance.governance.access import (
    PERMISSIONS,
    TOKEN_PREFIX,
    Principal,
    principal_for,
    require,
    saved_token_path,
)
from appliance.store import get_engine, migrate, session_scope

if TYPE_CHECKING:
    from appliance.store.models import ApiToken, User

_migrated: set[str] = set()

_HOW = ("pass --token-file PATH or --token - (stdin), set APPLIANCE_TOKEN, or run "
        "`appliance init` first")


def _secret(text: str, where: str) -> str:
    secret = text.strip()
    if not secret:
        raise InvalidInput(f"{where} holds no token")
    if any(c.isspace() for c in secret):
        raise InvalidInput(f"{where} must hold one token and nothing else")
    return secret


def _token_from_stdin(value: str | None) -> str | None:
    if value is None:
        return None
    if value != "-":
        # Not the value itself in the message: it may well be a secret, and messages get logged.
        hint = " (a secret)" if value.startswith(TOKEN_PREFIX) else ""
        raise InvalidInput(
            f"--token takes no token on the command line{hint}, where `ps` and shell history "
            "show it; pass --token-file PATH, --token - to read it from stdin, or set "
            "APPLIANCE_TOKEN"
        )
    return _secret(sys.stdin.read(), "stdin")


def _token_from_file(value: str | None) -> str | None:
    if value is None:
        return None
    if value == "-":
        return _secret(sys.stdin.read(), "stdin")
    try:
        text = Path(value).expanduser().read_text()
    except OSError as exc:
        raise InvalidInput(f"--token-file {value!r} cannot be read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise InvalidInput(f"--token-file {value!r} is not a text file") from None
    return _secret(text, f"--token-file {value!r}")


# Shared by every command that acts as someone (read by Typer, never mutated).
TOKEN = typer.Option(
    None, "--token", metavar="-", callback=_token_from_stdin,
    help="'-': read the acting user's token from stdin. The token itself is refused here.",
)
TOKEN_FILE = typer.Option(
    None, "--token-file", metavar="PATH", callback=_token_from_file,
    help="File holding the acting user's token ('-': stdin). Default: APPLIANCE_TOKEN, "
         "else the token `appliance init` saved.",
)


def config() -> Config:
    """Load the configuration and make sure the store's schema is current."""
    cfg = load_config()
    if cfg.db_url not in _migrated:
        migrate(cfg.db_url)
        _migrated.add(cfg.db_url)
    return cfg


def token_file(cfg: Config) -> Path:
    """Where `appliance init` saved the admin's token."""
    return saved_token_path(cfg)


def _find_token(cfg: Config, token: str | None) -> str | None:
    token = token or os.environ.get("APPLIANCE_TOKEN", "").strip() or None
    if not token and token_file(cfg).is_file():
        token = token_file(cfg).read_text().strip() or None
    return token


def _no_token(permission: str) -> PermissionDenied:
    roles = ", ".join(sorted(PERMISSIONS[permission]))
    return PermissionDenied(
        f"no API token: {permission!r} needs the token of a user with role {roles}; {_HOW}"
    )


def acting_user(cfg: Config, token: str | None = None, permission: str = "read") -> User:
    """The user behind `token`, ``APPLIANCE_TOKEN``, or the token `appliance init` saved.

    Args:
        cfg: the configuration (where the saved token and the store are).
        token: the secret from --token / --token-file (default None: look further).
        permission: what the command needs, named when there is no token (default "read";
            the caller or the library checks it).

    Raises:
        PermissionDenied: no token anywhere, or one that is unknown, revoked, expired or of
            a disabled user.
    """
    # Deferred (here and in acting_token): the ORM, which `reading` does without.
    from appliance.governance.users import authenticate

    token = _find_token(cfg, token)
    if not token:
        raise _no_token(permission)
    with session_scope(cfg.db_url) as session:
        return authenticate(session, token)


def acting_token(cfg: Config, token: str | None, permission: str) -> tuple[User, ApiToken]:
    """The acting user and the token row they act with (approvals check who issued it);
    arguments and errors as for `acting_user`."""
    from appliance.governance.users import authenticate_token
    from appliance.store.models import User

    token = _find_token(cfg, token)
    if not token:
        raise _no_token(permission)
    with session_scope(cfg.db_url) as session:
        row = authenticate_token(session, token)
        return session.get(User, row.user_id), row


def acting(token: str | None, permission: str) -> tuple[Config, User]:
    """The configuration and the acting user, authenticated; the operation the command
    calls checks that they hold `permission` (see PERMISSIONS), which is named here only
    when no token was found at all."""
    cfg = config()
    return cfg, acting_user(cfg, token, permission)


def reading(token: str | None) -> tuple[Config, Principal | None]:
    """The configuration and the reader: who holds "read", or None where the configuration
    lets reads run without a token and none was found.

    The token is checked through SQLAlchemy Core (`access.principal_for`, the same rules as
    `acting_user`), so a read command that needs no ORM (`status`) never builds it.
    """
    cfg = config()
    secret = _find_token(cfg, token)
    if secret is None and not cfg.require_token_for_reads:
        return cfg, None
    if not secret:
        raise _no_token("read")
    with get_engine(cfg.db_url).connect() as conn:
        reader = principal_for(conn, secret)
    require(reader, "read")
    return cfg, reader
