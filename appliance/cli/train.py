"""`appliance train SPEC`: train on Ray and register the model version."""

from __future__ import annotations

from pathlib import Path

import typer

from appliance.cli._context import TOKEN, TOKEN_FILE, acting
from appliance.cli._json_fields import json_option
from appliance.cli._output import emit_json, err_console
from appliance.cli._progress import TrainProgress
from appliance.cli._table import print_table
from appliance.pipelines import training


def train(
    spec_file: Path = typer.Argument(..., metavar="SPEC", help="Training spec (TOML or JSON)."),
    token: str = TOKEN,
    token_file: str = TOKEN_FILE,
    json_out: bool = json_option(training.TrainedPublic),
) -> None:
    """Train the model SPEC describes on Ray Train and register it as a new version.

    Progress (epoch k/N, loss, elapsed) goes to stderr on a terminal; stdout carries only the
    result (with --json, one JSON record). A failed run exits 1 with its cause on one line;
    more workers or GPUs than the Ray cluster has exit 2 within seconds.
    """
    cfg, user = acting(token or token_file, "operate")
    with TrainProgress(err_console, "training") as progress:
        # The library reads the spec once it has settled that `user` may train.
        out = training.train(cfg, user, spec_file, on_progress=progress.update,
                             on_spec=lambda s: progress.describe(
                                 f"training {s.model} on {s.dataset}"))
    doc = out.public()
    if json_out:
        emit_json(doc)
    else:
        print_table(["model", "version", "run", "accuracy", "auc", "device"],
                    [[doc.model, doc.version, doc.run, doc.metrics.get("accuracy"),
                      doc.metrics.get("auc"), doc.device]])
