"""`appliance policy show|set MODEL`: a model's window, retrain and canary policy."""

from __future__ import annotations

import json

import typer

from appliance.cli._context import TOKEN, TOKEN_FILE, acting, reading
from appliance.cli._json_fields import json_option
from appliance.cli._output import emit_json, err_console
from appliance.cli._table import print_table
from appliance.errors import InvalidInput
from appliance.monitor.policy import KEYS
from appliance.monitor.policy_store import PolicyPublic, effective, public, set_policy
from appliance.store import session_scope

app = typer.Typer(help="Each model's monitoring policy: windows, retraining, canary, promotion.")


def _value(text: str):
    """A KEY=VALUE value: JSON where it parses (numbers, true/false, lists), `none` for no
    limit, else the text itself (e.g. `drift,accuracy`)."""
    if text.lower() in ("none", "null", ""):
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _print(doc: PolicyPublic) -> None:
    print_table(["key", "value", "source"],
                [[k, ",".join(v) if isinstance(v, list) else v, doc.sources[k]]
                 for k, v in doc.policy.items()])


@app.command("show")
def show(
    model: str = typer.Argument(..., help="Model name."),
    json_out: bool = json_option(PolicyPublic),
    token: str = TOKEN,
    token_file: str = TOKEN_FILE,
) -> None:
    """Show MODEL's effective policy and where each value comes from."""
    cfg, _ = reading(token or token_file)
    with session_scope(cfg.db_url) as session:
        doc = public(effective(session, model, cfg.policy, must_exist=True))
    if json_out:
        emit_json(doc)
    else:
        _print(doc)


@app.command("set")
def set_(
    model: str = typer.Argument(..., help="Model name."),
    pairs: list[str] = typer.Argument(None, help="KEY=VALUE pairs, e.g. min_labelled_rows=4000 "
                                      "triggers=drift,accuracy max_rows=none"),
    reset: list[str] = typer.Option(None, "--reset", help="Return KEY to its default "
                                    "(repeatable)."),
    token: str = TOKEN,
    token_file: str = TOKEN_FILE,
    json_out: bool = json_option(PolicyPublic),
) -> None:
    """Change keys of MODEL's policy (audited)."""
    changes = {}
    for pair in pairs or []:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise InvalidInput(f"expected KEY=VALUE, got {pair!r}; keys: {', '.join(KEYS)}")
        changes[key.strip()] = _value(text.strip())
    cfg, user = acting(token or token_file, "operate")
    with session_scope(cfg.db_url) as session:
        doc = public(set_policy(session, user, model, changes, reset or [], cfg.policy))
    if json_out:
        emit_json(doc)
    else:
        err_console.print(f"policy of {model} updated")
        _print(doc)
