"""`appliance deploy` and `appliance undeploy`."""

from __future__ import annotations

import json
from pathlib import Path

import tomllib
import typer

from appliance.cli._context import TOKEN, TOKEN_FILE, acting
from appliance.cli._json_fields import json_option
from appliance.cli._output import emit_json, err_console
from appliance.errors import InvalidInput
from appliance.pipelines import deployment
from appliance.serving import parse_serving


def _serving(cfg, spec: Path | None):
    """The `--spec` file's ``[serving]`` table over the config's defaults, or None."""
    if spec is None:
        return None
    try:
        text = spec.read_text()
    except OSError as exc:
        raise InvalidInput(f"serving spec {str(spec)!r} cannot be read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise InvalidInput(f"serving spec {str(spec)!r} is not a text file") from None
    try:
        doc = json.loads(text) if spec.suffix == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise InvalidInput(f"serving spec {str(spec)!r} is not valid: {exc}") from None
    table = doc.get("serving", doc) if isinstance(doc, dict) else doc
    return parse_serving(table, f"serving spec {str(spec)!r}", base=cfg.serving)


def deploy(
    model: str = typer.Argument(..., help="Model to serve."),
    alias: str = typer.Option("champion", "--alias", help="Which alias to serve."),
    spec: Path = typer.Option(
        None, "--spec",
        help="TOML or JSON serving spec ([serving]: batching, replicas, autoscaling, GPUs, "
             "runtime_env); default: as the model is served now, else the config's.",
    ),
    token: str = TOKEN,
    token_file: str = TOKEN_FILE,
    json_out: bool = json_option(deployment.DeployedPublic),
) -> None:
    """Serve MODEL@ALIAS over the Open Inference Protocol v2 on Ray Serve."""
    cfg, user = acting(token or token_file, "operate")
    serving = _serving(cfg, spec)
    with err_console.status(f"deploying {model}@{alias} on Ray Serve..."):
        doc = deployment.deployed_public(deployment.deploy(cfg, user, model, alias, serving))
    if json_out:
        emit_json(doc)
    else:
        err_console.print(f"serving {model} at {doc.infer}")


def undeploy(
    model: str = typer.Argument(...),
    token: str = TOKEN,
    token_file: str = TOKEN_FILE,
) -> None:
    """Stop serving MODEL."""
    cfg, user = acting(token or token_file, "operate")
    deployment.undeploy(cfg, user, model)
