"""`appliance alerts list|ack|resolve`: the owner's side of an alert's life."""

from __future__ import annotations

import typer

from appliance.cli._context import TOKEN, TOKEN_FILE, acting, reading
from appliance.cli._json_fields import json_option
from appliance.cli._output import emit_json, err_console
from appliance.cli._table import print_table
from appliance.monitor import alerts
from appliance.store import session_scope

app = typer.Typer(help="Alerts raised by the monitor: list, acknowledge, resolve.")


@app.command("list")
def list_(
    status: str = typer.Option("active", help="active (open or acknowledged), open, "
                               "acknowledged, resolved or all."),
    model: str = typer.Option(None, help="Only this model's alerts."),
    token: str = TOKEN,
    token_file: str = TOKEN_FILE,
    json_out: bool = json_option(list[alerts.AlertPublic]),
) -> None:
    """List alerts, oldest first."""
    cfg, _ = reading(token or token_file)
    with session_scope(cfg.db_url) as session:
        rows = alerts.list_alerts(session, status=status, model=model)
    if json_out:
        emit_json(rows)
        return
    print_table(["id", "model", "kind", "rule", "severity", "status", "window", "count",
                 "owner", "team", "created"],
                [[a.id, a.model, a.kind, a.rule, a.severity, a.status, a.last_window,
                  a.occurrences, a.owner, a.team, a.created_at] for a in rows])


def _channels(cfg) -> alerts.Channels:
    return alerts.Channels(cfg.alerts_log, cfg.alert_webhook)


@app.command("ack")
def ack(
    alert_id: int = typer.Argument(..., help="Alert number (see `appliance alerts list`)."),
    token: str = TOKEN,
    token_file: str = TOKEN_FILE,
    json_out: bool = json_option(alerts.AlertPublic),
) -> None:
    """Acknowledge an open alert: you are on it."""
    cfg, user = acting(token or token_file, "operate")
    with session_scope(cfg.db_url) as session:
        doc = alerts.to_public(session, alerts.acknowledge(session, user, alert_id))
    if json_out:
        emit_json(doc)
    else:
        err_console.print(f"alert #{alert_id} acknowledged by {user.name}")


@app.command("resolve")
def resolve(
    alert_id: int = typer.Argument(..., help="Alert number (see `appliance alerts list`)."),
    comment: str = typer.Option(None, "--comment", help="What was done about it."),
    token: str = TOKEN,
    token_file: str = TOKEN_FILE,
    json_out: bool = json_option(alerts.AlertPublic),
) -> None:
    """Resolve an alert; its owner's channels hear of it."""
    cfg, user = acting(token or token_file, "operate")
    with session_scope(cfg.db_url) as session:
        doc = alerts.to_public(session, alerts.resolve(session, user, alert_id, comment,
                                                       _channels(cfg)))
    if json_out:
        emit_json(doc)
    else:
        err_console.print(f"alert #{alert_id} resolved by {user.name}")
