"""The `appliance` command: one Typer app composed of one module per command.

Exit codes (documented for scripts): 0 success, 1 a check ran and failed or a training run
failed, 2 bad usage or input (with one line on stderr naming the problem), 3 an internal error.
"""

from __future__ import annotations

import os
import sys
import traceback

import click
import typer

from appliance.cli._output import fail, reserve_stdout
from appliance.errors import ApplianceError, ExitCode, exit_code_for


def _classes(name: str) -> tuple[type[BaseException], ...]:
    # Recent Typer carries its own copy of Click, whose exceptions are not click's classes.
    found = {getattr(click.exceptions, name, None), getattr(typer, name, None)}
    try:
        from typer._click import exceptions as vendored

        found.add(getattr(vendored, name, None))
    except ImportError:
        pass
    return tuple(c for c in found if isinstance(c, type))


_ABORT, _USAGE, _EXIT = _classes("Abort"), _classes("ClickException"), _classes("Exit")

app = typer.Typer(
    name="appliance",
    help="On-prem GPU MLOps appliance: train, govern, serve, watch and refresh models.",
    no_args_is_help=True,
    # Locals in tracebacks can hold tokens and passwords.
    pretty_exceptions_show_locals=False,
    add_completion=False,
)


def _register() -> None:
    # Command modules import heavy parts (Ray, torch) lazily inside their bodies, so
    # `appliance --help` stays fast; registering here keeps main.py the single entry point.
    from appliance.cli import commands

    commands.register(app)


_register()


def run(argv: list[str] | None = None) -> None:
    """Console-script entry: run the CLI, mapping errors to exit codes and one stderr line."""
    args = sys.argv[1:] if argv is None else argv
    if args and "--help" not in args:
        # Help is the output of a help request; everything else keeps stdout for its data.
        reserve_stdout()
    try:
        app(args=args, standalone_mode=False)
    except ApplianceError as exc:
        fail(str(exc))
        sys.exit(exit_code_for(exc))
    except _ABORT:
        fail("aborted")
        sys.exit(ExitCode.USAGE)
    except _USAGE as exc:
        fail(exc.format_message())
        sys.exit(ExitCode.USAGE)
    except _EXIT as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        fail("interrupted")
        sys.exit(130)
    except Exception as exc:
        # A bug, not bad input: one line by default; APPLIANCE_DEBUG=1 shows the traceback.
        if os.environ.get("APPLIANCE_DEBUG"):
            traceback.print_exc()
        fail(f"internal error: {type(exc).__name__}: {exc} (set APPLIANCE_DEBUG=1 for details)")
        sys.exit(ExitCode.INTERNAL)
