"""`appliance audit`: read, verify, export and anchor the HMAC-chained audit log."""

from __future__ import annotations

import typer

from appliance.cli import _times
from appliance.cli._context import TOKEN, TOKEN_FILE, acting, reading
from appliance.cli._json_fields import json_option
from appliance.cli._output import emit_json, err_console
from appliance.cli._table import print_table
from appliance.errors import CheckFailed, InvalidInput
from appliance.governance import audit
from appliance.store import session_scope

app = typer.Typer(help="The append-only, HMAC-chained audit log and its checkpoints.")

_FORMATS = ("jsonl",)


@app.command("verify")
def verify(
    json_out: bool = json_option(audit.VerifyResult),
    token: str = TOKEN,
    token_file: str = TOKEN_FILE,
) -> None:
    """Check every event's HMAC and link, and the chain against its latest checkpoint; exit 1
    naming the first bad event."""
    cfg, _ = reading(token or token_file)
    with session_scope(cfg.db_url) as session:
        result = audit.verify(session, cfg)
    if json_out:
        emit_json(result)
    if not result.ok:
        where = f"at event {result.broken_at}" if result.broken_at else "checkpoints"
        raise CheckFailed(f"audit chain broken ({where}): {result.reason}")
    checkpoint = (f"checkpoint of {result.checkpoint_at} ({result.checkpoint_events} events)"
                  if result.checkpoint_events is not None else "no checkpoint yet")
    err_console.print(f"audit chain intact: {result.events} events, head {result.head[:16]}, "
                      f"{checkpoint}", highlight=False)


@app.command("export")
def export(
    since: str = typer.Option(None, "--since",
                              help="Only events from this time on: ISO 8601, or 30m, 12h, 7d ago."),
    fmt: str = typer.Option("jsonl", "--format", help="Output format: jsonl."),
    token: str = TOKEN,
    token_file: str = TOKEN_FILE,
) -> None:
    """Write events as one JSON object per line on stdout, hashes included (for a SIEM)."""
    if fmt not in _FORMATS:
        raise InvalidInput(f"--format {fmt!r} is not supported; formats: {', '.join(_FORMATS)}")
    start = _times.point(since, "--since", ago=True)
    cfg, _ = reading(token or token_file)
    with session_scope(cfg.db_url) as session:
        for event in audit.export(session, start):
            emit_json(event, line=True)


@app.command("anchor")
def anchor(token: str = TOKEN, token_file: str = TOKEN_FILE) -> None:
    """Accept, once, the unkeyed events written before the chain was keyed (admin)."""
    cfg, user = acting(token or token_file, "admin")
    with session_scope(cfg.db_url) as session:
        cp = audit.anchor(session, user, cfg)
    err_console.print(f"anchored {cp.events} unkeyed events, head {cp.head_hash[:16]}",
                      highlight=False)


@app.command("list")
def list_(
    limit: int = typer.Option(50, help="Newest N events."),
    action: str = typer.Option(None, help="Only events whose action starts with this."),
    json_out: bool = json_option(list[audit.AuditListedPublic]),
    token: str = TOKEN,
    token_file: str = TOKEN_FILE,
) -> None:
    """List audit events, newest last."""
    cfg, _ = reading(token or token_file)
    with session_scope(cfg.db_url) as session:
        docs = audit.listed(session, limit, action)
    if json_out:
        emit_json(docs)
    else:
        print_table(["id", "actor", "action", "object", "time"],
                    [[d.id, d.actor, d.action, d.object, d.ts] for d in docs])
