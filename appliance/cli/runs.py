"""`appliance runs`: list, show and compare training runs, and train one again from its record."""

from __future__ import annotations

import typer

from appliance.cli._context import TOKEN, TOKEN_FILE, acting, reading
from appliance.cli._json_fields import json_option
from appliance.cli._output import emit_json, err_console
from appliance.cli._table import print_table
from appliance.pipelines import training
from appliance.registry import runs as registry
from appliance.store import session_scope

app = typer.Typer(help="Training runs: what each recorded, side by side, and reruns.")


def _row(doc: registry.RunPublic) -> list:
    return [doc.id, doc.model, doc.version, doc.status,
            f"{doc.dataset.name}:{doc.dataset.version}", doc.seed, doc.metrics.get("accuracy"),
            doc.device, doc.rerun_of, doc.started_at]


_HEADERS = ["id", "model", "version", "status", "dataset", "seed", "accuracy", "device",
            "rerun_of", "age"]


@app.command("list")
def list_(
    model: str = typer.Option(None, "--model", help="Only this model's runs."),
    limit: int = typer.Option(50, "--limit", help="At most this many, newest first."),
    json_out: bool = json_option(list[registry.RunPublic]),
    token: str = TOKEN,
    token_file: str = TOKEN_FILE,
) -> None:
    """List training runs, newest first."""
    cfg, _ = reading(token or token_file)
    with session_scope(cfg.db_url) as session:
        docs = registry.list_runs(session, model=model, limit=limit)
    if json_out:
        emit_json(docs)
    else:
        print_table(_HEADERS, [_row(d) for d in docs])


@app.command("show")
def show(
    run_id: str = typer.Argument(..., metavar="RUN", help="Run id (see `appliance runs list`)."),
    json_out: bool = json_option(registry.RunPublic),
    token: str = TOKEN,
    token_file: str = TOKEN_FILE,
) -> None:
    """Show what a run recorded: spec, seed, dataset version, code, environment, metrics."""
    cfg, _ = reading(token or token_file)
    with session_scope(cfg.db_url) as session:
        doc = registry.show(session, run_id)
    if json_out:
        emit_json(doc)
        return
    env = doc.environment
    print_table(["field", "value"], [
        ["id", doc.id], ["model", doc.model], ["version", doc.version], ["status", doc.status],
        ["dataset", f"{doc.dataset.name}:{doc.dataset.version}"],
        ["dataset_digest", doc.dataset.digest], ["seed", doc.seed], ["device", doc.device],
        ["rerun_of", doc.rerun_of], ["code_version", env.code_version],
        ["packages", env.packages], ["python", env.python], ["torch", env.torch],
        ["cuda", env.cuda], ["gpu_driver", env.gpu_driver], ["os", env.os],
        ["cpu", env.hardware.cpu], ["cores", env.hardware.cores],
        ["memory_bytes", env.hardware.memory_bytes],
        ["gpus", ",".join(env.hardware.gpus)],
        *[[f"params.{k}", v] for k, v in sorted(doc.params.items())],
        *[[f"metrics.{k}", v] for k, v in sorted(doc.metrics.items())],
        ["error", doc.error], ["created_by", doc.created_by], ["started_at", doc.started_at],
        ["finished_at", doc.finished_at],
    ])


@app.command("compare")
def compare(
    a: str = typer.Argument(..., metavar="A", help="Run id."),
    b: str = typer.Argument(..., metavar="B", help="Run id."),
    all_keys: bool = typer.Option(False, "--all", help="Every key, not only those that differ."),
    json_out: bool = json_option(registry.RunComparisonPublic),
    token: str = TOKEN,
    token_file: str = TOKEN_FILE,
) -> None:
    """Two runs side by side: run facts, spec, params, metrics and environment."""
    cfg, _ = reading(token or token_file)
    with session_scope(cfg.db_url) as session:
        doc = registry.compare(session, a, b, all_keys=all_keys)
    if json_out:
        emit_json(doc)
        return
    print_table(["key", "a", "b", "same"],
                [[f"{f.section}.{f.key}", f.a, f.b, "yes" if f.same else "no"]
                 for f in doc.fields])
    if not doc.differing:
        err_console.print(f"runs {a} and {b} recorded the same values")


@app.command("rerun")
def rerun(
    run_id: str = typer.Argument(..., metavar="RUN", help="The run to train again."),
    json_out: bool = json_option(registry.RunPublic),
    token: str = TOKEN,
    token_file: str = TOKEN_FILE,
) -> None:
    """Train again from RUN's record (same spec, dataset version and seed) as a new run."""
    cfg, user = acting(token or token_file, "operate")
    with err_console.status(f"training run {run_id} again with Ray Train..."):
        out = training.rerun(cfg, user, run_id)
    with session_scope(cfg.db_url) as session:
        doc = registry.show(session, out.run_id)
    if json_out:
        emit_json(doc)
    else:
        print_table(_HEADERS, [_row(doc)])
