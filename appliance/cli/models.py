"""`appliance models` and `appliance lineage`."""

from __future__ import annotations

import typer
from sqlmodel import select

from appliance.cli._context import config
from appliance.cli._output import emit_json
from appliance.cli._table import print_table
from appliance.registry import lineage as lineage_mod
from appliance.registry import models as registry
from appliance.store import session_scope
from appliance.store.models import ModelVersion

app = typer.Typer(help="Registered models and their versions.")


def _public(session, mv: ModelVersion) -> dict:
    return {"model": mv.model_name, "version": mv.version, "aliases": registry.aliases_of(
        session, mv), "digest": mv.digest, "run": mv.run_id, "metrics": mv.metrics,
        "created_by": mv.created_by, "created_at": mv.created_at}


@app.command("list")
def list_(
    model: str = typer.Argument(None, help="Only this model's versions."),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """List model versions with their aliases."""
    cfg = config()
    with session_scope(cfg.db_url) as session:
        query = select(ModelVersion).order_by(ModelVersion.model_name, ModelVersion.version)
        if model:
            registry.get_model(session, model)
            query = query.where(ModelVersion.model_name == model)
        docs = [_public(session, mv) for mv in session.exec(query).all()]
    if json_out:
        emit_json(docs)
    else:
        print_table(["name", "version", "aliases", "accuracy", "run", "age"],
                    [[d["model"], d["version"], ",".join(d["aliases"]),
                      d["metrics"].get("accuracy"), d["run"], d["created_at"]] for d in docs])


@app.command("show")
def show(
    ref: str = typer.Argument(..., help="MODEL, MODEL:VERSION or MODEL@ALIAS."),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Show one model version."""
    cfg = config()
    with session_scope(cfg.db_url) as session:
        doc = _public(session, registry.resolve(session, ref))
    if json_out:
        emit_json(doc)
    else:
        print_table(["name", "version", "aliases", "digest"],
                    [[doc["model"], doc["version"], ",".join(doc["aliases"]), doc["digest"]]])


def lineage(
    ref: str = typer.Argument(..., help="MODEL, MODEL:VERSION or MODEL@ALIAS."),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Where a model version came from: dataset, run, params, code, and who approved it."""
    cfg = config()
    with session_scope(cfg.db_url) as session:
        doc = lineage_mod.lineage(session, ref)
    if json_out:
        emit_json(doc)
        return
    approved = [a for a in doc["approvals"] if a["status"] == "approved"]
    print_table(
        ["name", "version", "dataset", "run", "seed", "code", "requested_by", "approved_by"],
        [[doc["model"], doc["version"], f"{doc['dataset']['name']}:{doc['dataset']['version']}",
          doc["run"]["id"], doc["run"]["seed"], doc["code_version"],
          approved[-1]["requested_by"] if approved else None,
          approved[-1]["approved_by"] if approved else None]],
    )
