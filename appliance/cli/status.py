"""`appliance status`: what this appliance holds and serves right now."""

from __future__ import annotations

import typer

from appliance.cli._context import TOKEN, TOKEN_FILE, reading
from appliance.cli._output import emit_json, err_console
from appliance.cli._table import print_table
from appliance.pipelines import lifecycle
from appliance.registry import overview
from appliance.store import session_scope
from appliance.store.database import redact


def status(
    json_out: bool = typer.Option(False, "--json"),
    token: str = TOKEN,
    token_file: str = TOKEN_FILE,
) -> None:
    """Counts of datasets, models and versions, open approvals and alerts, deployments, and
    the local Ray head with its Serve applications."""
    cfg, _ = reading(token or token_file)
    with session_scope(cfg.db_url) as session:
        doc = {"home": str(cfg.home), "db_url": redact(cfg.db_url),
               **overview.store_counts(session)}
    ray_head = lifecycle.head_status(cfg)
    doc["ray_head"] = ray_head
    if json_out:
        emit_json(doc)
        return
    print_table(["name", "datasets", "models", "versions", "approvals", "alerts", "serving"],
                [[doc["home"], doc["datasets"], doc["models"], doc["versions"],
                  doc["pending_approvals"], doc["open_alerts"], len(doc["deployments"])]])
    if ray_head.address is not None:
        apps = ",".join(f"{a.name}={a.status}" for a in ray_head.applications or [])
        print_table(["name", "address", "running", "reachable", "processes", "applications"],
                    [["ray-head", ray_head.address, ray_head.running, ray_head.reachable,
                      ray_head.processes, apps]])
    if ray_head.error:
        err_console.print(f"warning: {ray_head.error}", soft_wrap=True, markup=False)
