"""`appliance audit`: read and verify the hash-chained audit log."""

from __future__ import annotations

import typer
from sqlmodel import select

from appliance.cli._context import TOKEN, TOKEN_FILE, reading
from appliance.cli._output import emit_json, err_console
from appliance.cli._table import print_table
from appliance.errors import CheckFailed
from appliance.governance import audit
from appliance.store import session_scope
from appliance.store.models import AuditEvent

app = typer.Typer(help="The append-only, hash-chained audit log.")


@app.command("verify")
def verify(
    json_out: bool = typer.Option(False, "--json"),
    token: str = TOKEN,
    token_file: str = TOKEN_FILE,
) -> None:
    """Check every event's hash and link; exit 1 naming the first broken event."""
    cfg, _ = reading(token or token_file)
    with session_scope(cfg.db_url) as session:
        result = audit.verify(session)
    doc = {"ok": result.ok, "events": result.events, "head": result.head,
           "broken_at": result.broken_at, "reason": result.reason}
    if json_out:
        emit_json(doc)
    elif result.ok:
        err_console.print(f"audit chain intact: {result.events} events, head {result.head[:16]}")
    if not result.ok:
        raise CheckFailed(f"audit chain broken at event {result.broken_at}: {result.reason}")


@app.command("list")
def list_(
    limit: int = typer.Option(50, help="Newest N events."),
    action: str = typer.Option(None, help="Only events whose action starts with this."),
    json_out: bool = typer.Option(False, "--json"),
    token: str = TOKEN,
    token_file: str = TOKEN_FILE,
) -> None:
    """List audit events, newest last."""
    cfg, _ = reading(token or token_file)
    with session_scope(cfg.db_url) as session:
        query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
        if action:
            query = query.where(AuditEvent.action.startswith(action))
        rows = list(reversed(session.exec(query).all()))
    docs = [{"id": e.id, "ts": e.ts, "actor": e.actor, "action": e.action,
             "object": f"{e.object_type}/{e.object_id}", "details": e.details,
             "hash": e.hash} for e in rows]
    if json_out:
        emit_json(docs)
    else:
        print_table(["id", "actor", "action", "object", "time"],
                    [[d["id"], d["actor"], d["action"], d["object"], d["ts"]] for d in docs])
