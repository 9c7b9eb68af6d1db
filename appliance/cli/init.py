"""`appliance init`: create the store and the first admin, and save its token."""

from __future__ import annotations

import os

import typer

from appliance.cli._context import config, token_file
from appliance.cli._output import emit_json, err_console
from appliance.errors import ConflictError
from appliance.governance.users import create_user, has_users, issue_token
from appliance.store import session_scope
from appliance.store.database import redact


def init(
    admin: str = typer.Option("admin", help="Name of the first admin user."),
    team: str = typer.Option("platform", help="The admin's team."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Create the metadata store, the first admin user and its token (saved under home, 0600)."""
    cfg = config()
    cfg.artifacts.mkdir(parents=True, exist_ok=True)
    with session_scope(cfg.db_url) as session:
        if has_users(session):
            raise ConflictError(
                f"the store at {redact(cfg.db_url)!r} already has users; create more with "
                "`appliance users create`"
            )
        create_user(session, admin, "admin", actor=admin, team=team)
        secret = issue_token(session, admin, "init", actor=admin)
    path = token_file(cfg)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secret)
    doc = {"home": str(cfg.home), "db_url": redact(cfg.db_url), "artifacts": str(cfg.artifacts),
           "admin": admin, "token_file": str(path)}
    if json_out:
        emit_json(doc)
    else:
        err_console.print(f"initialised appliance at [bold]{cfg.home}[/]; admin {admin!r}")
        err_console.print(f"admin token saved to {path} (used when APPLIANCE_TOKEN is unset)")
