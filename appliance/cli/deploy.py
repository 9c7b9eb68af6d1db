"""`appliance deploy` and `appliance undeploy`."""

from __future__ import annotations

import typer

from appliance.cli._context import acting_user, config
from appliance.cli._output import emit_json, err_console
from appliance.pipelines import deployment


def deploy(
    model: str = typer.Argument(..., help="Model to serve."),
    alias: str = typer.Option("champion", "--alias", help="Which alias to serve."),
    token: str = typer.Option(None, envvar="APPLIANCE_TOKEN"),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Serve MODEL@ALIAS over the Open Inference Protocol v2 on Ray Serve."""
    cfg = config()
    user = acting_user(cfg, token)
    with err_console.status(f"deploying {model}@{alias} on Ray Serve..."):
        dep = deployment.deploy(cfg, user, model, alias)
    doc = {"deployment": dep.name, "model": dep.model_name, "url": dep.url,
           "infer": f"{dep.url}/v2/models/{dep.name}/infer"}
    if json_out:
        emit_json(doc)
    else:
        err_console.print(f"serving {model} at {doc['infer']}")


def undeploy(
    model: str = typer.Argument(...),
    token: str = typer.Option(None, envvar="APPLIANCE_TOKEN"),
) -> None:
    """Stop serving MODEL."""
    cfg = config()
    deployment.undeploy(cfg, acting_user(cfg, token), model)
