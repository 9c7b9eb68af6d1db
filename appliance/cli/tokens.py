"""`appliance tokens`: API tokens, issued for a user, listed and revoked (never shown twice)."""

from __future__ import annotations

import typer

from appliance.cli import _times
from appliance.cli._context import TOKEN, TOKEN_FILE, acting
from appliance.cli._json_fields import json_option
from appliance.cli._output import data_stream, emit_json
from appliance.cli._table import print_table
from appliance.governance import users as gov
from appliance.store import session_scope

app = typer.Typer(help="Issue, list and revoke API tokens.")


@app.command("create")
def create(
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


@app.command("list")
def list_tokens(
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


@app.command("revoke")
def revoke(
    user: str = typer.Argument(...),
    name: str = typer.Option(..., "--name"),
    token: str = TOKEN,
    token_file: str = TOKEN_FILE,
) -> None:
    """Revoke USER's token NAME."""
    cfg, actor = acting(token or token_file, "admin")
    with session_scope(cfg.db_url) as session:
        gov.withdraw_token(session, actor, user, name)
