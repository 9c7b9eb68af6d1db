"""`appliance models` and `appliance lineage`."""

from __future__ import annotations

import typer

from appliance.cli._context import TOKEN, TOKEN_FILE, acting, reading
from appliance.cli._json_fields import json_option
from appliance.cli._output import emit_json
from appliance.cli._table import print_table
from appliance.registry import lineage as lineage_mod
from appliance.registry import models as registry
from appliance.store import session_scope

app = typer.Typer(help="Registered models and their versions.")


@app.command("list")
def list_(
    model: str = typer.Argument(None, help="Only this model's versions."),
    json_out: bool = json_option(list[registry.ModelVersionPublic]),
    token: str = TOKEN,
    token_file: str = TOKEN_FILE,
) -> None:
    """List model versions with their aliases."""
    cfg, _ = reading(token or token_file)
    with session_scope(cfg.db_url) as session:
        docs = registry.list_public(session, model)
    if json_out:
        emit_json(docs)
    else:
        print_table(["name", "version", "aliases", "accuracy", "run", "age"],
                    [[d.model, d.version, ",".join(d.aliases), d.metrics.get("accuracy"),
                      d.run, d.created_at] for d in docs])


@app.command("show")
def show(
    ref: str = typer.Argument(..., help="MODEL, MODEL:VERSION or MODEL@ALIAS."),
    json_out: bool = json_option(registry.ModelVersionPublic),
    token: str = TOKEN,
    token_file: str = TOKEN_FILE,
) -> None:
    """Show one model version."""
    cfg, _ = reading(token or token_file)
    with session_scope(cfg.db_url) as session:
        doc = registry.version_public(session, ref)
    if json_out:
        emit_json(doc)
    else:
        print_table(["name", "version", "aliases", "digest"],
                    [[doc.model, doc.version, ",".join(doc.aliases), doc.digest]])


@app.command("set")
def set_(
    model: str = typer.Argument(..., help="Model name."),
    owner: str = typer.Option(None, help="User who owns it (gets its alerts)."),
    team: str = typer.Option(None, help="Team it belongs to."),
    runbook: str = typer.Option(None, help="Runbook URL every alert carries ('' clears)."),
    risk_tier: str = typer.Option(None, help="low, medium or high (needs an approver)."),
    description: str = typer.Option(None),
    review_interval_days: int = typer.Option(
        None, "--review-interval-days", help="Days between periodic reviews (needs an "
                                             "approver; default: the risk tier's)."),
    token: str = TOKEN,
    token_file: str = TOKEN_FILE,
    json_out: bool = json_option(registry.ModelSettingsPublic),
) -> None:
    """Change a model's owner, team, runbook, risk tier, review interval or description
    (audited)."""
    cfg, user = acting(token or token_file, "read")
    with session_scope(cfg.db_url) as session:
        row = registry.update_model(session, user, model, owner=owner, team=team,
                                    runbook_url=runbook, risk_tier=risk_tier,
                                    description=description,
                                    review_interval_days=review_interval_days)
        doc = registry.settings_public(row)
    if json_out:
        emit_json(doc)


def lineage(
    ref: str = typer.Argument(..., help="MODEL, MODEL:VERSION or MODEL@ALIAS."),
    json_out: bool = json_option(lineage_mod.LineagePublic),
    token: str = TOKEN,
    token_file: str = TOKEN_FILE,
) -> None:
    """Where a model version came from: dataset, run, params, code, and who approved it."""
    cfg, _ = reading(token or token_file)
    with session_scope(cfg.db_url) as session:
        doc = lineage_mod.lineage(session, ref)
    if json_out:
        emit_json(doc)
        return
    approved = [a for a in doc.approvals if a.status == "approved"]
    print_table(
        ["name", "version", "dataset", "run", "seed", "code", "requested_by", "approved_by"],
        [[doc.model, doc.version, f"{doc.dataset.name}:{doc.dataset.version}", doc.run.id,
          doc.run.seed, doc.code_version, approved[-1].requested_by if approved else None,
          approved[-1].approved_by if approved else None]],
    )
