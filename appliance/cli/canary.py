"""`appliance canary status MODEL`: what serves a model, and where its retraining stands."""

from __future__ import annotations

import typer

from appliance.cli._context import TOKEN, TOKEN_FILE, reading
from appliance.cli._json_fields import json_option
from appliance.cli._output import emit_json
from appliance.cli._table import print_table
from appliance.monitor import canary
from appliance.store import session_scope

app = typer.Typer(help="Challengers behind a model's route: canary or shadow.")


@app.command("status")
def status(
    model: str = typer.Argument(..., help="Model name."),
    json_out: bool = json_option(canary.CanaryStatusPublic),
    token: str = TOKEN,
    token_file: str = TOKEN_FILE,
) -> None:
    """Show the versions serving MODEL and its latest retrain request's state."""
    cfg, _ = reading(token or token_file)
    with session_scope(cfg.db_url) as session:
        doc = canary.status(session, model)
    if json_out:
        emit_json(doc)
        return
    print_table(["name", "version", "role", "mode", "share", "since"],
                [[doc.model, s.version, s.role, s.mode, s.share, s.since] for s in doc.serving])
    r = doc.retrain
    if r is not None:
        verdict = (r.canary or {}).get("verdict") or {}
        print_table(["retrain", "state", "trigger", "dataset", "contract", "champion",
                     "challenger", "gate", "canary", "approval", "age"],
                    [[f"#{r.id}", r.state, r.trigger, r.dataset, r.data_contract_status,
                      r.champion_version, r.challenger_version, (r.gate or {}).get("passed"),
                      verdict.get("status"), r.approval, r.created_at]])
        if r.data_contract and r.data_contract.violations:
            # The retraining set's findings: "block" holds the request until `data accept`.
            print_table(["column", "check", "severity", "message"],
                        [[v.column or "<table>", v.check, v.severity.value, v.message]
                         for v in r.data_contract.violations])
