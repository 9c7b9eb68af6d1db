"""`appliance predictions show|explain`: one logged prediction, traced and explained.

    appliance predictions show REQUEST_ID --json
    appliance predictions explain REQUEST_ID [--row N] --json
"""

from __future__ import annotations

import typer

from appliance.cli._context import TOKEN, TOKEN_FILE, reading
from appliance.cli._json_fields import json_option
from appliance.cli._output import emit_json
from appliance.cli._table import print_table
from appliance.monitor import trace
from appliance.pipelines import explain as explaining
from appliance.store import session_scope

app = typer.Typer(help="Logged predictions: what the model saw and said, and why.",
                  no_args_is_help=True)

DEPLOYMENT = typer.Option(None, "--deployment", help="Only look in this deployment.")


@app.command("show")
def show(
    request_id: str = typer.Argument(..., help="The request id an answer carried "
                                     "(x-appliance-request-id)."),
    deployment: str = DEPLOYMENT,
    token: str = TOKEN,
    token_file: str = TOKEN_FILE,
    json_out: bool = json_option(trace.PredictionPublic),
) -> None:
    """The request's inputs as logged, its answer, the version and its lineage, the label."""
    cfg, _ = reading(token or token_file)
    with session_scope(cfg.db_url) as session:
        doc = trace.show(session, cfg.predictions_dir, cfg.artifacts, request_id, deployment)
    if json_out:
        emit_json(doc)
        return
    where = "pending" if doc.pending else f"window {doc.window}"
    typer.echo(f"{doc.request_id}  {doc.model}  {doc.deployment}  {where}")
    print_table(["row", "version", "shadow", "prediction", "score", "label", "inputs"],
                [[r.row, r.version, r.shadow, r.prediction, r.score, r.label,
                  ",".join(f"{k}={v}" for k, v in r.inputs.items())] for r in doc.rows])
    for number, line in doc.lineage.items():
        ds, run = line.dataset, line.run
        approved = [a.approved_by for a in line.approvals if a.approved_by]
        typer.echo(f"v{number}: dataset {ds.name}:{ds.version}  run {run.id}  "
                   f"approved by {','.join(approved) or '<none>'}")


@app.command("explain")
def explain(
    request_id: str = typer.Argument(..., help="The request id an answer carried."),
    row: int = typer.Option(None, "--row", min=0, help="Which row of the request (default "
                            "the first)."),
    deployment: str = DEPLOYMENT,
    token: str = TOKEN,
    token_file: str = TOKEN_FILE,
    json_out: bool = json_option(explaining.ExplanationPublic),
) -> None:
    """Per-feature attributions of one logged prediction (TreeSHAP for trees, integrated
    gradients for networks)."""
    cfg, _ = reading(token or token_file)
    with session_scope(cfg.db_url) as session:
        doc = explaining.explain(cfg, session, request_id, row=row, deployment=deployment)
    if json_out:
        emit_json(doc)
        return
    typer.echo(f"{doc.model} v{doc.version} ({doc.kind}, {doc.method}): {doc.output} "
               f"{doc.value:.4g} vs baseline {doc.baseline_value:.4g}")
    print_table(["feature", "value", "attribution"],
                [[a.feature, a.value, f"{a.attribution:+.4g}"] for a in doc.attributions])
