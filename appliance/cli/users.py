"""`appliance users` and `appliance tokens`: people, roles and their API tokens."""

from __future__ import annotations

import datetime as dt

import typer
from sqlmodel import select

from appliance.cli._context import acting, config
from appliance.cli._output import data_stream, emit_json
from appliance.cli._table import print_table
from appliance.errors import InvalidInput
from appliance.governance import users as gov
from appliance.store import session_scope, utcnow
from appliance.store.models import User

users_app = typer.Typer(help="Manage users and roles (viewer, operator, approver, admin).")
tokens_app = typer.Typer(help="Issue and revoke API tokens.")


@users_app.command("create")
def create(
    name: str = typer.Argument(..., help="User name."),
    role: str = typer.Option("viewer", help="viewer, operator, approver or admin."),
    team: str = typer.Option("default", help="Team the user's costs and models belong to."),
    token: str = typer.Option(None, envvar="APPLIANCE_TOKEN", help="Acting admin's token."),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Create a user and issue a first token (printed once)."""
    cfg, actor = acting(token, "admin")
    with session_scope(cfg.db_url) as session:
        user = gov.create_user(session, name, role, actor=actor.name, team=team)
        secret = gov.issue_token(session, name, "default", actor=actor.name)
    doc = {"name": user.name, "role": user.role, "team": user.team, "token": secret}
    if json_out:
        emit_json(doc)
    else:
        print_table(["name", "role", "team", "token"], [[user.name, user.role, user.team, secret]])


@users_app.command("list")
def list_users(json_out: bool = typer.Option(False, "--json")) -> None:
    """List users."""
    cfg = config()
    with session_scope(cfg.db_url) as session:
        rows = session.exec(select(User).order_by(User.name)).all()
    docs = [{"name": u.name, "role": u.role, "team": u.team, "created_at": u.created_at}
            for u in rows]
    if json_out:
        emit_json(docs)
    else:
        print_table(["name", "role", "team", "age"],
                    [[d["name"], d["role"], d["team"], d["created_at"]] for d in docs])


def _expiry(value: str | None) -> dt.datetime | None:
    """`--expires`: a duration from now (30m, 12h, 90d) or an ISO 8601 time with a zone."""
    if value is None:
        return None
    units = {"m": 60, "h": 3600, "d": 86400}
    if value[-1:] in units and value[:-1].isdigit():
        return utcnow() + dt.timedelta(seconds=int(value[:-1]) * units[value[-1]])
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(
            f"--expires {value!r} is neither a duration (30m, 12h, 90d) nor an ISO 8601 time"
        ) from None
    if when.tzinfo is None:
        raise InvalidInput(f"--expires {value!r} has no time zone; add Z or +00:00")
    return when


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
    token: str = typer.Option(None, envvar="APPLIANCE_TOKEN", help="Acting admin's token."),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Issue a token for USER (printed once; stored hashed)."""
    cfg, actor = acting(token, "admin")
    expires_at = _expiry(expires)
    with session_scope(cfg.db_url) as session:
        secret = gov.issue_token(session, user, name, actor=actor.name,
                                 scopes=scope or None, expires_at=expires_at)
    if json_out:
        emit_json({"user": user, "name": name, "token": secret, "scopes": scope or None,
                   "expires_at": expires_at})
    else:
        data_stream().write(secret + "\n")


@tokens_app.command("revoke")
def token_revoke(
    user: str = typer.Argument(...),
    name: str = typer.Option(..., "--name"),
    token: str = typer.Option(None, envvar="APPLIANCE_TOKEN"),
) -> None:
    """Revoke USER's token NAME."""
    cfg, actor = acting(token, "admin")
    with session_scope(cfg.db_url) as session:
        gov.revoke_token(session, user, name, actor=actor.name)
