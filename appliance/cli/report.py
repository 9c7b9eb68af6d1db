"""`appliance report`: model cards and the monthly audit report, for auditors."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import typer

from appliance.cli._context import TOKEN, TOKEN_FILE, reading
from appliance.cli._output import data_stream, err_console
from appliance.errors import InvalidInput
from appliance.reports import FORMATS, build_audit_report, build_model_card, parse_month, render
from appliance.store import session_scope

app = typer.Typer(help="Model cards and monthly audit reports (HTML, Markdown or JSON).")

FORMAT = typer.Option("html", "--format", help=f"One of {', '.join(FORMATS)}.")
OUTPUT = typer.Option(None, "--output", "-o", metavar="PATH",
                      help="Write the document here (default: stdout).")


def _check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise InvalidInput(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")
    return fmt


def _write(text: str, output: Path | None) -> None:
    if output is None:
        out = data_stream()
        out.write(text)
        out.flush()
        return
    target = output.expanduser()
    if not target.parent.is_dir():
        raise InvalidInput(f"--output {str(output)!r}: folder {str(target.parent)!r} does "
                           "not exist")
    # A temp name renamed into place: a reader never sees half a report.
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    err_console.print(f"wrote {target}", highlight=False, markup=False)


@app.command("model")
def model(
    name: str = typer.Argument(..., help="Model name."),
    version: int = typer.Option(None, "--version", help="Version (default: the champion, "
                                                        "else the latest)."),
    fmt: str = FORMAT,
    output: Path = OUTPUT,
    token: str = TOKEN,
    token_file: str = TOKEN_FILE,
) -> None:
    """A model card: ownership, lineage, evaluation, approvals, deployments, drift, alerts."""
    _check_format(fmt)
    cfg, _ = reading(token or token_file)
    with session_scope(cfg.db_url) as session:
        card = build_model_card(session, name, version)
    _write(render(card, fmt), output)


@app.command("audit")
def audit_report(
    month: str = typer.Option(..., "--month", help="YYYY-MM (UTC)."),
    fmt: str = FORMAT,
    output: Path = OUTPUT,
    token: str = TOKEN,
    token_file: str = TOKEN_FILE,
) -> None:
    """The month's promotions, exceptions, alerts, access changes, audit chain and reviews."""
    _check_format(fmt)
    parse_month(month)
    cfg, _ = reading(token or token_file)
    with session_scope(cfg.db_url) as session:
        report = build_audit_report(session, month, cfg)
    _write(render(report, fmt), output)
