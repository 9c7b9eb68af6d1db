"""`appliance promote`, `approve`, `reject`, `rollback`: gated, four-eyes alias moves."""

from __future__ import annotations

import typer
from sqlmodel import select

from appliance.cli._context import TOKEN, TOKEN_FILE, acting, acting_user, config, reading
from appliance.cli._output import emit_json, err_console
from appliance.cli._table import print_table
from appliance.governance import approvals
from appliance.pipelines import deployment, promotion
from appliance.store import session_scope
from appliance.store.models import Approval, ModelVersion


def promote(
    model: str = typer.Argument(..., help="Model name."),
    version: int = typer.Argument(..., help="Version to promote."),
    to: str = typer.Option("champion", "--to", help="Alias to move (champion, challenger)."),
    token: str = TOKEN,
    token_file: str = TOKEN_FILE,
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Gate MODEL:VERSION against the alias holder and request approval to move the alias."""
    cfg, user = acting(token or token_file, "operate")
    with err_console.status("evaluating candidate and incumbent on the same holdout..."):
        approval, gate = promotion.request(cfg, user, f"{model}:{version}", to)
    doc = {"approval": approval.id, "model": model, "version": version, "alias": to,
           "status": approval.status, "gate": gate}
    if json_out:
        emit_json(doc)
    else:
        err_console.print(f"gate passed; approval request #{approval.id} awaits an approver "
                          f"(`appliance approve {approval.id}`)")


def approve(
    approval_id: int = typer.Argument(..., help="Approval request number."),
    comment: str = typer.Option(None, "--comment"),
    token: str = TOKEN,
    token_file: str = TOKEN_FILE,
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Approve a promotion request (not your own) and move the alias."""
    cfg = config()
    user = acting_user(cfg, token or token_file, "approve")
    with session_scope(cfg.db_url) as session:
        alias = approvals.approve(session, user, approval_id, comment)
        mv = session.get(ModelVersion, alias.version_id)
        doc = {"approval": approval_id, "model": mv.model_name, "alias": alias.alias,
               "version": mv.version, "approved_by": user.name}
    if json_out:
        emit_json(doc)
    else:
        err_console.print(f"{doc['model']}@{doc['alias']} -> version {doc['version']}")


def reject(
    approval_id: int = typer.Argument(...),
    comment: str = typer.Option(None, "--comment"),
    token: str = TOKEN,
    token_file: str = TOKEN_FILE,
) -> None:
    """Reject a promotion request."""
    cfg = config()
    user = acting_user(cfg, token or token_file, "approve")
    with session_scope(cfg.db_url) as session:
        approvals.reject(session, user, approval_id, comment)


def approvals_list(
    status: str = typer.Option("pending", help="pending, approved, rejected or all."),
    json_out: bool = typer.Option(False, "--json"),
    token: str = TOKEN,
    token_file: str = TOKEN_FILE,
) -> None:
    """List approval requests."""
    cfg, _ = reading(token or token_file)
    with session_scope(cfg.db_url) as session:
        query = select(Approval).order_by(Approval.id)
        if status != "all":
            query = query.where(Approval.status == status)
        rows = session.exec(query).all()
        docs = [{"id": a.id, "model": a.model_name,
                 "version": session.get(ModelVersion, a.version_id).version,
                 "alias": a.target_alias, "status": a.status, "requested_by": a.requested_by,
                 "decided_by": a.decided_by, "requested_at": a.requested_at} for a in rows]
    if json_out:
        emit_json(docs)
    else:
        print_table(["id", "model", "version", "alias", "status", "requested_by", "age"],
                    [[d["id"], d["model"], d["version"], d["alias"], d["status"],
                      d["requested_by"], d["requested_at"]] for d in docs])


def rollback(
    model: str = typer.Argument(...),
    to_version: int = typer.Option(None, "--to-version",
                                   help="An earlier champion to restore (default: the last "
                                        "one before the current)."),
    token: str = TOKEN,
    token_file: str = TOKEN_FILE,
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Put MODEL's previous champion back: alias and serving in one step.

    A running canary and retrain request are stopped. Audited; no gate.
    """
    cfg, user = acting(token or token_file, "approve")
    with err_console.status(f"rolling {model} back..."):
        done = deployment.rollback(cfg, user, model, to_version)
    doc = {"model": done.model, "from_version": done.from_version,
           "to_version": done.to_version, "canary_removed": done.canary_removed,
           "retrain_cancelled": done.retrain_cancelled}
    if json_out:
        emit_json(doc)
    else:
        err_console.print(f"{model}@champion -> version {done.to_version} (was "
                          f"{done.from_version})")
