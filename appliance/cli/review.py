"""`appliance review`: record a model's periodic review (approvers)."""

from __future__ import annotations

import typer

from appliance.cli._context import TOKEN, TOKEN_FILE, acting
from appliance.cli._json_fields import json_option
from appliance.cli._output import emit_json, err_console
from appliance.governance import reviews
from appliance.store import session_scope


def review(
    model: str = typer.Argument(..., help="Model name."),
    notes: str = typer.Option(..., "--notes", help="What was reviewed and found."),
    json_out: bool = json_option(reviews.ReviewPublic),
    token: str = TOKEN,
    token_file: str = TOKEN_FILE,
) -> None:
    """Record that you reviewed MODEL (approver role; audited); the next review is due one
    review interval later."""
    cfg, user = acting(token or token_file, "approve")
    with session_scope(cfg.db_url) as session:
        done = reviews.record_review(session, user, model, notes)
    if json_out:
        emit_json(done)
    else:
        err_console.print(f"review #{done.id} of {done.model} recorded; next due "
                          f"{done.next_due_at:%Y-%m-%d}", highlight=False)
