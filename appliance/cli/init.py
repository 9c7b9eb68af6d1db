"""`appliance init`: create the store and the first admin, and save its token."""

from __future__ import annotations

import typer
from rich.markup import escape

from appliance.cli._context import config
from appliance.cli._json_fields import json_option
from appliance.cli._output import emit_json, err_console
from appliance.governance.bootstrap import InitPublic, initialise


def init(
    admin: str = typer.Option("admin", help="Name of the first admin user."),
    team: str = typer.Option("platform", help="The admin's team."),
    json_out: bool = json_option(InitPublic),
) -> None:
    """Create the metadata store, the first admin user and its token (saved under home, 0600)."""
    doc = initialise(config(), admin, team)
    if json_out:
        emit_json(doc)
    else:
        # Paths are the operator's: `[x]` in one is text, not markup.
        err_console.print(f"initialised appliance at [bold]{escape(str(doc.home))}[/]; "
                          f"admin {admin!r}")
        err_console.print(f"admin token saved to {doc.token_file} (used when APPLIANCE_TOKEN "
                          "is unset)", markup=False)
