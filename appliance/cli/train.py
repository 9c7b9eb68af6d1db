"""`appliance train SPEC`: train on Ray and register the model version."""

from __future__ import annotations

from pathlib import Path

import typer

from appliance.cli._context import TOKEN, TOKEN_FILE, acting
from appliance.cli._output import emit_json, err_console
from appliance.cli._progress import TrainProgress
from appliance.cli._table import print_table
from appliance.pipelines import training
from appliance.pipelines.spec import load_spec


def train(
    spec_file: Path = typer.Argument(..., metavar="SPEC", help="Training spec (TOML or JSON)."),
    token: str = TOKEN,
    token_file: str = TOKEN_FILE,
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Train the model SPEC describes on Ray Train and register it as a new version.

    Progress (epoch k/N, loss, elapsed) goes to stderr on a terminal; stdout carries only the
    result (with --json, one JSON record). A failed run exits 1 with its cause on one line;
    more workers or GPUs than the Ray cluster has exit 2 within seconds.
    """
    # Who asks is settled before anything is read: an outsider learns nothing from the errors.
    cfg, user = acting(token or token_file, "operate")
    spec = load_spec(spec_file)
    with TrainProgress(err_console, f"training {spec.model} on {spec.dataset}") as progress:
        out = training.train(cfg, user, spec, on_progress=progress.update)
    doc = {"model": out.version.model_name, "version": out.version.version, "run": out.run_id,
           "metrics": out.metrics, "device": out.device, "seconds": round(out.seconds, 2),
           "digest": out.version.digest}
    if json_out:
        emit_json(doc)
    else:
        print_table(["model", "version", "run", "accuracy", "auc", "device"],
                    [[doc["model"], doc["version"], doc["run"], out.metrics.get("accuracy"),
                      out.metrics.get("auc"), out.device]])
