"""`appliance users` and `appliance tokens`: people, roles and their API tokens."""

from __future__ import annotations

import typer

from appliance.cli import _times
from appliance.cli._context import TOKEN, TOKEN_FILE, acting, reading
from appliance.cli._json_fields import json_option
from appliance.cli._output import data_stream, emit_json, err_console
from appliance.cli._table import print_table
from appliance.governance import users as gov
from appliance.store import session_scope

users_app = typer.Typer(help="Manage users and roles (viewer, operator, approver, admin).")
tokens_app = typer.Typer(help="Issue, list and revoke API tokens.")


@users_app.command("create")
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


@users_app.command("list")
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


@users_app.command("disable")
def disable(
    name: str = typer.Argument(..., help="User name."),
    token: str = TOKEN,
    token_file: str = TOKEN_FILE,
    json_out: bool = json_option(gov.UserPublic),
) -> None:
    """Disable NAME: every token of theirs is refused, in the CLI and at serving (audited)."""
    _set_disabled(name, token or token_file, json_out, True)


@users_app.command("enable")
def enable(
    name: str = typer.Argument(..., help="User name."),
    token: str = TOKEN,
    token_file: str = TOKEN_FILE,
    json_out: bool = json_option(gov.UserPublic),
) -> None:
    """Enable NAME again: their tokens that are neither revoked nor expired work again."""
    _set_disabled(name, token or token_file, json_out, False)


@tokens_app.command("create")
def token_create(
    user: str = typer.Argument(..., help="User the token acts as."),
    name: str = typer.Option(..., "--name", help="A label for the token."),
    scope: list[str] = typer.Option(
        None, "--scope",
        help="Serving scope, repeatable: infer, feedback, admin (default: the role's).",
    ),
    expires: str = typer.Option(
        None, "--expires", help="Expiry: a duration (30m, 12h, 90d) or an ISO 8601 time."
    ),
    token: str = TOKEN,
    token_file: str = TOKEN_FILE,
    json_out: bool = json_option(gov.IssuedTokenPublic),
) -> None:
    """Issue a token for USER (printed once; stored hashed)."""
    cfg, actor = acting(token or token_file, "admin")
    expires_at = _times.point(expires, "--expires", ago=False)
    with session_scope(cfg.db_url) as session:
        doc = gov.grant_token(session, actor, user, name, scopes=scope or None,
                              expires_at=expires_at)
    if json_out:
        emit_json(doc)
    else:
        data_stream().write(doc.token + "\n")


@tokens_app.command("list")
def token_list(
    user: str = typer.Option(None, "--user", help="Only this user's tokens."),
    token: str = TOKEN,
    token_file: str = TOKEN_FILE,
    json_out: bool = json_option(list[gov.TokenPublic]),
) -> None:
    """List tokens: name, user, scopes, created, expires, revoked (never a secret or hash)."""
    cfg, actor = acting(token or token_file, "admin")
    with session_scope(cfg.db_url) as session:
        docs = gov.list_tokens(session, actor, user)
    if json_out:
        emit_json(docs)
    else:
        print_table(["name", "user", "scopes", "state", "expires", "revoked", "age"],
                    [[d.name, d.user, ",".join(d.scopes), d.state, d.expires_at, d.revoked_at,
                      d.created_at] for d in docs])


@tokens_app.command("revoke")
def token_revoke(
    user: str = typer.Argument(...),
    name: str = typer.Option(..., "--name"),
    token: str = TOKEN,
    token_file: str = TOKEN_FILE,
) -> None:
    """Revoke USER's token NAME."""
    cfg, actor = acting(token or token_file, "admin")
    with session_scope(cfg.db_url) as session:
        gov.withdraw_token(session, actor, user, name)
