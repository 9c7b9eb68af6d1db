"""`appliance monitor`: the service that closes windows, checks drift and live metrics, raises
alerts and runs the retrain loop."""

from __future__ import annotations

import dataclasses

import typer

from appliance.cli._context import TOKEN, TOKEN_FILE, acting
from appliance.cli._json_fields import json_option
from appliance.cli._output import emit_json, err_console
from appliance.cli._table import print_table
from appliance.errors import InvalidInput
from appliance.names import check_name
from appliance.pipelines import daemon


def _print_round(r: daemon.Round, json_out: bool, *, line: bool = False) -> None:
    if json_out:
        emit_json(dataclasses.asdict(r), line=line)
        return
    rows = []
    for p in r.passes:
        for w in p.closed:
            main = max((v for v in w.versions if not v["shadow"]), default=None,
                       key=lambda v: v["rows"])
            rows.append([p.deployment, w.window, "closed", w.rows, main and main["drift"],
                         main and main["drifted_share"],
                         main and (main["estimated"] or {}).get("accuracy"), None,
                         len(p.alerts_raised)])
        for w in p.relabelled:
            rows.append([p.deployment, w.window, "labels", w.rows, None, None, None,
                         w.accuracy, len(p.alerts_raised)])
        if p.error or p.skipped:
            rows.append([p.deployment, None, p.error or p.skipped, None, None, None, None,
                         None, None])
    if rows:
        print_table(["deployment", "window", "event", "rows", "drift", "drifted_share",
                     "est_accuracy", "accuracy", "alerts"], rows)
    for s in r.steps:
        err_console.print(f"retrain #{s.request} ({s.model}): {s.before} -> {s.after}: {s.note}",
                          markup=False)


def monitor(
    once: bool = typer.Option(False, "--once", help="One round, then exit."),
    interval: float = typer.Option(60.0, help="Seconds between monitor passes."),
    deployment: str = typer.Option(None, help="Only this deployment."),
    token: str = TOKEN,
    token_file: str = TOKEN_FILE,
    json_out: bool = json_option(
        daemon.Round, help="JSON: one document with --once, else one line per round."),
) -> None:
    """Run the monitor service: windows, drift, live metrics, alerts and the retrain loop.

    The retrain loop builds the retraining set, trains the challenger, gates it, canaries
    it and requests its promotion, for every deployment whose policy asks for it.
    """
    if not interval > 0:
        raise InvalidInput(f"--interval must be positive, got {interval}")
    if deployment is not None:
        check_name("deployment name", deployment)
    cfg, user = acting(token or token_file, "read")
    if once:
        _print_round(daemon.run_round(cfg, user, deployment=deployment), json_out)
        return
    daemon.run_forever(cfg, user, interval=interval, deployment=deployment,
                       on_round=lambda r: _print_round(r, json_out, line=True))
