"""`appliance status`: what this appliance holds and serves right now."""

from __future__ import annotations

from appliance.cli._context import TOKEN, TOKEN_FILE, reading
from appliance.cli._json_fields import json_option
from appliance.cli._output import emit_json, err_console
from appliance.cli._table import print_table
from appliance.pipelines.status import StatusPublic, appliance_status


def status(
    json_out: bool = json_option(StatusPublic),
    token: str = TOKEN,
    token_file: str = TOKEN_FILE,
) -> None:
    """Counts of datasets, models and versions, open approvals and alerts, deployments, and
    the local Ray head with its Serve applications."""
    cfg, _ = reading(token or token_file)
    record = appliance_status(cfg)
    if json_out:
        # Python-mode dump: times leave as `emit_json` writes every time (+00:00), as before.
        emit_json(record.model_dump())
        return
    print_table(["name", "datasets", "models", "versions", "approvals", "alerts", "serving"],
                [[record.home, record.datasets, record.models, record.versions,
                  record.pending_approvals, record.open_alerts, len(record.deployments)]])
    head = record.ray_head
    if head.address is not None:
        apps = ",".join(f"{a.name}={a.status}" for a in head.applications or [])
        print_table(["name", "address", "running", "reachable", "processes", "applications"],
                    [["ray-head", head.address, head.running, head.reachable, head.processes,
                      apps]])
    if head.error:
        err_console.print(f"warning: {head.error}", soft_wrap=True, markup=False)
