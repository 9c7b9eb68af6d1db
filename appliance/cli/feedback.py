"""`appliance feedback`: ground-truth labels for served predictions."""

from __future__ import annotations

from pathlib import Path

import typer

from appliance.cli._context import TOKEN, TOKEN_FILE, acting
from appliance.cli._json_fields import json_option
from appliance.cli._output import emit_json
from appliance.monitor import label_delivery
from appliance.names import check_name

app = typer.Typer(help="Ground-truth labels for served predictions.")


@app.command("add")
def add(
    file: Path = typer.Argument(..., help="Parquet or CSV with request_id, row, label."),
    deployment: str = typer.Option(..., "--deployment", help="Deployment the labels are for."),
    token: str = TOKEN,
    token_file: str = TOKEN_FILE,
    json_out: bool = json_option(label_delivery.FeedbackPublic),
) -> None:
    """Add ground-truth labels, joined to served predictions by request id and row."""
    check_name("deployment name", deployment)
    cfg, user = acting(token or token_file, "operate")
    doc = label_delivery.add_labels(cfg, user, file, deployment)
    if json_out:
        emit_json(doc)
