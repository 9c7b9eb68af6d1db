"""`appliance users`: people, their roles and teams (each with a first API token)."""

from __future__ import annotations

import typer

from appliance.cli._context import TOKEN, TOKEN_FILE, acting, reading
from appliance.cli._json_fields import json_option
from appliance.cli._output import emit_json, err_console
from appliance.cli._table import print_table
from appliance.governance import users as gov
from appliance.store import session_scope

app = typer.Typer(help="Manage users and roles (viewer, operator, approver, admin).")


@app.command("create")
def create(
    name: str = typer.Argument(..., help="User name."),
    role: str = typer.Option("viewer", help="viewer, operator, approver or admin."),
    team: str = typer.Option("default", help="Team the user's costs and models belong to."),
    token: str = TOKEN,
    token_file: str = TOKEN_FILE,
    json_out: bool = json_option(gov.NewUserPublic),
) -> None:
    """Create a user and issue a first token (printed once)."""
    cfg, actor = acting(token or token_file, "admin")
    with session_scope(cfg.db_url) as session:
        doc = gov.add_user(session, actor, name, role, team=team)
    if json_out:
        emit_json(doc)
    else:
        print_table(["name", "role", "team", "token"], [[doc.name, doc.role, doc.team, doc.token]])


@app.command("list")
def list_users(
    json_out: bool = json_option(list[gov.UserPublic]),
    token: str = TOKEN,
    token_file: str = TOKEN_FILE,
) -> None:
    """List users."""
    cfg, _ = reading(token or token_file)
    with session_scope(cfg.db_url) as session:
        docs = gov.list_users(session)
    if json_out:
        emit_json(docs)
    else:
        print_table(["name", "role", "team", "disabled", "age"],
                    [[d.name, d.role, d.team, d.disabled_at, d.created_at] for d in docs])


def _set_disabled(name: str, token: str | None, json_out: bool, disabled: bool) -> None:
    cfg, actor = acting(token, "admin")
    with session_scope(cfg.db_url) as session:
        doc = gov.set_disabled(session, actor, name, disabled)
    if json_out:
        emit_json(doc)
    else:
        err_console.print(f"user {name} {'disabled' if disabled else 'enabled'}", markup=False)


@app.command("disable")
def disable(
    name: str = typer.Argument(..., help="User name."),
    token: str = TOKEN,
    token_file: str = TOKEN_FILE,
    json_out: bool = json_option(gov.UserPublic),
) -> None:
    """Disable NAME: every token of theirs is refused, in the CLI and at serving (audited)."""
    _set_disabled(name, token or token_file, json_out, True)


@app.command("enable")
def enable(
    name: str = typer.Argument(..., help="User name."),
    token: str = TOKEN,
    token_file: str = TOKEN_FILE,
    json_out: bool = json_option(gov.UserPublic),
) -> None:
    """Enable NAME again: their tokens that are neither revoked nor expired work again."""
    _set_disabled(name, token or token_file, json_out, False)
