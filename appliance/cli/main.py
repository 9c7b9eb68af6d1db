"""The `appliance` command: one Typer app composed of one module per command.

The commands are rows of `appliance.cli.commands`, each module imported only when its command
runs, so that ``appliance --help`` imports none of them (nor pyarrow, sqlalchemy, Ray...).

Exit codes (documented for scripts): 0 success, 1 a check ran and failed or a training run
failed, 2 bad usage or input (with one line on stderr naming the problem), 3 an internal error,
130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import os
import sys
import traceback

import typer

from appliance.cli._output import fail, reserve_stdout
from appliance.cli.commands import RootGroup
from appliance.errors import ApplianceError, ExitCode, exit_code_for


def _classes(name: str) -> tuple[type[BaseException], ...]:
    # Recent Typer carries its own copy of Click, whose exceptions are not click's classes;
    # older Typer raises Click's own (imported only then: nothing else here needs Click).
    try:
        from typer._click import exceptions
    except ImportError:
        from click import exceptions
    found = {getattr(exceptions, name, None), getattr(typer, name, None)}
    return tuple(c for c in found if isinstance(c, type))


_ABORT, _USAGE, _EXIT = _classes("Abort"), _classes("ClickException"), _classes("Exit")

def _root() -> None:
    # A root with a callback is a group even while none of its commands is loaded; it does
    # nothing, and its help is the Typer's `help` below.
    pass


app = typer.Typer(
    name="appliance",
    cls=RootGroup,
    callback=_root,
    help="On-prem GPU MLOps appliance: train, govern, serve, watch and refresh models.",
    no_args_is_help=True,
    # Locals in tracebacks can hold tokens and passwords.
    pretty_exceptions_show_locals=False,
    add_completion=False,
)


def run(argv: list[str] | None = None) -> None:
    """Console-script entry: run the CLI, mapping errors to exit codes and one stderr line."""
    args = sys.argv[1:] if argv is None else argv
    if args and "--help" not in args:
        # Help is the output of a help request; everything else keeps stdout for its data.
        reserve_stdout()
    try:
        code = app(args=args, standalone_mode=False)
    except ApplianceError as exc:
        fail(str(exc))
        sys.exit(exit_code_for(exc))
    except _ABORT:
        fail("aborted")
        sys.exit(ExitCode.USAGE)
    except _USAGE as exc:
        # A bare `appliance` gets its help printed by Typer and an empty message.
        fail(exc.format_message() or "Missing command.")
        sys.exit(ExitCode.USAGE)
    except _EXIT as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt as exc:
        fail("interrupted")
        sys.exit(exit_code_for(exc))
    except Exception as exc:
        # A bug, not bad input: one line by default; APPLIANCE_DEBUG=1 shows the traceback.
        if os.environ.get("APPLIANCE_DEBUG"):
            traceback.print_exc()
        fail(f"internal error: {type(exc).__name__}: {exc} (set APPLIANCE_DEBUG=1 for details)")
        sys.exit(ExitCode.INTERNAL)
    # Outside standalone mode Click returns, not raises, the code of an `Exit` (Typer turns
    # Ctrl-C inside a command into Exit(130)); commands return None, so an int is that code,
    # and dropping it would make an interrupted command exit 0.
    if isinstance(code, int) and code:
        if code == ExitCode.INTERRUPTED:
            fail("interrupted")
        sys.exit(code)
