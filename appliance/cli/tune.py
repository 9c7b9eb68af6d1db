"""`appliance tune SPEC`: a sweep on Ray Tune, the best retrained and registered."""

from __future__ import annotations

from pathlib import Path

import typer

from appliance.cli._context import TOKEN, TOKEN_FILE, acting
from appliance.cli._json_fields import json_option
from appliance.cli._output import emit_json, err_console
from appliance.cli._table import print_table
from appliance.cli._tune_progress import TuneProgress
from appliance.pipelines import tuning


def tune(
    spec_file: Path = typer.Argument(..., metavar="SPEC",
                                     help="Spec with a [tune] table (TOML or JSON)."),
    token: str = TOKEN,
    token_file: str = TOKEN_FILE,
    json_out: bool = json_option(tuning.TuningPublic),
) -> None:
    """Search the [tune] space of SPEC with Ray Tune (ASHA), then register the best.

    Trial progress (params, epoch or round k/N, the metric, running / stopped early / done)
    goes to stderr: a live table on a terminal, one line per ended trial off it. stdout
    carries only the result (with --json, one JSON record).
    """
    cfg, user = acting(token or token_file, "operate")
    loaded = {}

    with TuneProgress(err_console, "tuning", "metric", 0) as progress:
        def on_spec(spec, tune_spec) -> None:
            loaded["kind"] = tune_spec.kind
            progress.describe(f"tuning {spec.model} ({tune_spec.kind}) on {spec.dataset} "
                              "with Ray Tune (ASHA)", tune_spec.metric, tune_spec.num_samples)

        # The library reads the spec once it has settled that `user` may tune.
        out = tuning.tune(cfg, user, spec_file, on_progress=progress.update, on_spec=on_spec)
    if json_out:
        emit_json(out)
        return
    metric = out.metric
    # A trial's budget used: boosting rounds for the trees, epochs for the networks.
    budget = "rounds" if loaded["kind"] == "xgboost" else "epochs"
    print_table(["trial", "run", "status", budget, metric],
                [[t.trial_id, t.run, t.status, t.epochs, t.metrics.get(metric)]
                 for t in out.trials])
    err_console.print(
        f"tuning run {out.run}: best trial {out.best.trial_id} ({metric} "
        f"{out.best.metrics.get(metric)}), {out.stopped_early} stopped early; registered "
        f"{out.registered.model}:{out.registered.version} (run {out.registered.run})"
    )
