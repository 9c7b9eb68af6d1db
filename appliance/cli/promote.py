"""`appliance promote`, `approve`, `reject`, `rollback`: gated, four-eyes alias moves."""

from __future__ import annotations

import typer

from appliance.cli import _times
from appliance.cli._context import TOKEN, TOKEN_FILE, acting, acting_token, config, reading
from appliance.cli._json_fields import json_option
from appliance.cli._output import emit_json, err_console
from appliance.cli._table import print_table
from appliance.errors import GateFailed
from appliance.governance import approvals
from appliance.names import check_name
from appliance.pipelines import deployment, promotion
from appliance.store import session_scope
from appliance.store.models import utcnow


def promote(
    model: str = typer.Argument(..., help="Model name."),
    version: int = typer.Argument(..., help="Version to promote."),
    to: str = typer.Option("champion", "--to", help="Alias to move (champion, challenger)."),
    expires_in: str = typer.Option(None, "--expires-in",
                                   help="How long the request waits for approvers, e.g. 48h or "
                                        "7d (default 7d)."),
    token: str = TOKEN,
    token_file: str = TOKEN_FILE,
    json_out: bool = json_option(approvals.PromotionRequestPublic),
) -> None:
    """Gate MODEL:VERSION against the alias holder and request approval to move the alias."""
    check_name("model name", model)
    check_name("alias", to)
    expires_at = (None if expires_in is None
                  else utcnow() + _times.duration(expires_in, "--expires-in"))
    cfg, user = acting(token or token_file, "operate")
    try:
        with err_console.status("evaluating candidate and incumbent on the same holdout..."):
            approval, result = promotion.request(cfg, user, f"{model}:{version}", to,
                                                 expires_at=expires_at)
    except GateFailed as exc:
        _show(approvals.gate_failure_report(model, version, to, exc.verdict), json_out)
        raise
    with session_scope(cfg.db_url) as session:
        doc = approvals.promotion_report(session, approval, result)
    _show(doc, json_out)
    if not json_out:
        err_console.print(f"gate passed; approval request #{doc.approval} awaits "
                          f"{doc.required_approvals} approver(s) "
                          f"(`appliance approve {doc.approval}`)")


def _show(doc: approvals.PromotionRequestPublic, json_out: bool) -> None:
    """The gate's verdict: the whole record as JSON, or one table row per check."""
    if json_out:
        emit_json(doc)
        return
    print_table(["check", "kind", "measured", "limit", "result", "detail"],
                [[c.name, c.kind, c.measured, c.limit,
                  ("passed" if c.passed else "failed") if c.judged else "not_judged", c.detail]
                 for c in doc.gate.checks])


def approve(
    approval_id: int = typer.Argument(..., help="Approval request number."),
    comment: str = typer.Option(None, "--comment"),
    token: str = TOKEN,
    token_file: str = TOKEN_FILE,
    json_out: bool = json_option(approvals.ApprovalPublic),
) -> None:
    """Approve a promotion request (not your own); the alias moves once enough approvers did."""
    cfg = config()
    user, row = acting_token(cfg, token or token_file, "approve")
    with session_scope(cfg.db_url) as session:
        approval = approvals.approve(session, user, approval_id, comment, token=row)
        doc = approvals.to_public(session, approval)
    if json_out:
        emit_json(doc)
    elif doc.status == "approved":
        err_console.print(f"{doc.model}@{doc.alias} -> version {doc.version}")
    else:
        err_console.print(f"approval request #{doc.id}: {len(doc.approved_by)} of "
                          f"{doc.required_approvals} approvers; it waits for another")


def reject(
    approval_id: int = typer.Argument(...),
    comment: str = typer.Option(None, "--comment"),
    token: str = TOKEN,
    token_file: str = TOKEN_FILE,
) -> None:
    """Reject a promotion request."""
    cfg = config()
    user, row = acting_token(cfg, token or token_file, "approve")
    with session_scope(cfg.db_url) as session:
        approvals.reject(session, user, approval_id, comment, token=row)


def approvals_list(
    status: str = typer.Option("pending", help="pending, approved, rejected, expired, stale "
                                               "or all."),
    json_out: bool = json_option(list[approvals.ApprovalPublic]),
    token: str = TOKEN,
    token_file: str = TOKEN_FILE,
) -> None:
    """List approval requests (a pending one past its expiry shows as expired)."""
    cfg, _ = reading(token or token_file)
    with session_scope(cfg.db_url) as session:
        docs = approvals.list_approvals(session, status)
    if json_out:
        emit_json(docs)
    else:
        print_table(["id", "model", "version", "alias", "status", "approvals", "requested_by",
                     "expires", "age"],
                    [[d.id, d.model, d.version, d.alias, d.status,
                      f"{len(d.approved_by)}/{d.required_approvals}", d.requested_by,
                      d.expires_at, d.requested_at] for d in docs])


def rollback(
    model: str = typer.Argument(...),
    to_version: int = typer.Option(None, "--to-version",
                                   help="An earlier champion to restore (default: the last "
                                        "one before the current)."),
    token: str = TOKEN,
    token_file: str = TOKEN_FILE,
    json_out: bool = json_option(deployment.RollbackPublic),
) -> None:
    """Put MODEL's previous champion back: alias and serving in one step.

    A running canary and retrain request are stopped. Audited; no gate.
    """
    cfg, user = acting(token or token_file, "approve")
    with err_console.status(f"rolling {model} back..."):
        done = deployment.rollback(cfg, user, model, to_version).public()
    if json_out:
        emit_json(done)
    else:
        err_console.print(f"{model}@champion -> version {done.to_version} (was "
                          f"{done.from_version})")
