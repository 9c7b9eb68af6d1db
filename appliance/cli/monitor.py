"""`appliance monitor`, `appliance alerts`, `appliance feedback`."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import typer

from appliance.cli._context import acting, config
from appliance.cli._output import emit_json
from appliance.cli._table import print_table
from appliance.errors import InvalidInput, NotFound
from appliance.governance import audit
from appliance.monitor import service
from appliance.monitor.feedback import write_feedback
from appliance.registry.datasets import read_table
from appliance.store import session_scope
from appliance.store.models import Alert, utcnow

alerts_app = typer.Typer(help="Alerts raised by the monitor.")
feedback_app = typer.Typer(help="Ground-truth labels for served predictions.")


def monitor(
    once: bool = typer.Option(False, "--once", help="One pass, then exit."),
    interval: float = typer.Option(60.0, help="Seconds between passes when running as a service."),
    deployment: str = typer.Option(None, help="Only this deployment."),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Close prediction windows, compute drift and live accuracy, and raise alerts."""
    if interval <= 0:
        raise InvalidInput(f"--interval must be positive, got {interval}")
    cfg = config()
    while True:
        results = service.run_once(cfg, deployment)
        docs = [dataclasses.asdict(r) for r in results]
        if json_out:
            emit_json(docs)
        else:
            print_table(["deployment", "window", "rows", "drifted_share", "accuracy", "alerts"],
                        [[d["deployment"], d["window"], d["rows"], d["drifted_share"],
                          d["accuracy"], len(d["alerts"])] for d in docs])
        if once:
            return
        time.sleep(interval)


@alerts_app.command("list")
def alerts_list(
    model: str = typer.Option(None, help="Only this model's alerts."),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """List unacknowledged alerts."""
    cfg = config()
    with session_scope(cfg.db_url) as session:
        rows = service.open_alerts(session, model)
    docs = [{"id": a.id, "kind": a.kind, "severity": a.severity, "model": a.model_name,
             "deployment": a.deployment, "owner": a.owner, "message": a.message,
             "notified": a.notified, "created_at": a.created_at} for a in rows]
    if json_out:
        emit_json(docs)
    else:
        print_table(["id", "kind", "severity", "model", "owner", "age"],
                    [[d["id"], d["kind"], d["severity"], d["model"], d["owner"],
                      d["created_at"]] for d in docs])


@alerts_app.command("ack")
def alerts_ack(
    alert_id: int = typer.Argument(...),
    token: str = typer.Option(None, envvar="APPLIANCE_TOKEN"),
) -> None:
    """Acknowledge an alert."""
    cfg, user = acting(token, "operate")
    with session_scope(cfg.db_url) as session:
        alert = session.get(Alert, alert_id)
        if alert is None:
            raise NotFound(f"no alert #{alert_id}")
        alert.acknowledged_by, alert.acknowledged_at = user.name, utcnow()
        session.add(alert)
        audit.record(session, user.name, "alert.acknowledged", "alert", alert_id, {})


@feedback_app.command("add")
def feedback_add(
    file: Path = typer.Argument(..., help="Parquet or CSV with request_id, row, label."),
    deployment: str = typer.Option(..., "--deployment", help="Deployment the labels are for."),
    token: str = typer.Option(None, envvar="APPLIANCE_TOKEN"),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Add ground-truth labels, joined to served predictions by request id and row."""
    cfg, user = acting(token, "operate")
    table = read_table(file)
    missing = [c for c in ("request_id", "label") if c not in table.column_names]
    if missing:
        raise InvalidInput(f"feedback file {str(file)!r} lacks column(s) {missing}")
    rows = (table.column("row") if "row" in table.column_names
            else pa.array([0] * table.num_rows, pa.int32()))
    try:
        labels = pc.cast(table.column("label"), pa.int64())
    except pa.ArrowInvalid as exc:
        raise InvalidInput(f"feedback file {str(file)!r}: 'label' must be integers") from exc
    path = write_feedback(cfg.artifacts, deployment, table.column("request_id"), rows, labels)
    with session_scope(cfg.db_url) as session:
        audit.record(session, user.name, "feedback.added", "deployment", deployment,
                     {"rows": table.num_rows, "file": path.name})
    if json_out:
        emit_json({"deployment": deployment, "rows": table.num_rows, "path": str(path)})
