"""`appliance.cli.main.run`, the console-script entry: how each way a command can end becomes
an exit code and at most one line on stderr.

tests/test_errors_exit_codes.py maps each error class to its code, and tests/cli/test_cli_errors.py
runs real commands into exit 2; here a command of the test's own, added as one more row of the
root group, raises what each case names, so every branch of `run` is reached: an
`ApplianceError` (its code, its message), a bug (exit 3, one line, the traceback only with
APPLIANCE_DEBUG), Ctrl-C (130), `typer.Exit` and `typer.Abort`, a bare `appliance`. A crash and
a real SIGINT run in a process of their own, where the exit code is the process's.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys

import pytest
import typer

from appliance.cli import _output
from appliance.cli._lazy import Command
from appliance.cli.commands import COMMANDS, RootGroup
from appliance.cli.main import run
from appliance.errors import CheckFailed, InvalidInput

SECRET = "apl_" + "k" * 43

RAISES = {
    "invalid": lambda: InvalidInput("model name 'a b' may not hold a space"),
    "check": lambda: CheckFailed("the audit chain breaks at event #3"),
    "bug": lambda: ValueError("no state named 'x'\nsecond line"),
    "secret": lambda: RuntimeError(f"postgresql://app:hunter2@db/x refused {SECRET}"),
    "ctrl-c": KeyboardInterrupt,
    "abort": typer.Abort,
    "exit": lambda: typer.Exit(4),
}


def raise_(kind: str) -> None:
    """Raise what KIND names."""
    raise RAISES[kind]()


@pytest.fixture
def entry(monkeypatch, capsys):
    """`run(args)` with the `raise` command added; returns (exit code, stdout, stderr lines)."""
    row = Command("raise", f"{__name__}:raise_", "Raise what KIND names.")
    monkeypatch.setattr(RootGroup, "COMMANDS", (*COMMANDS, row))
    # As if stdout were reserved already: `run` then leaves this process's fd 1 alone, and the
    # data stream is a buffer the test reads.
    data = io.StringIO()
    monkeypatch.setattr(_output, "_data_stream", data)
    monkeypatch.delenv("APPLIANCE_DEBUG", raising=False)

    def call(*args: str) -> tuple[int, str, list[str]]:
        with pytest.raises(SystemExit) as info:
            run(list(args))
        captured = capsys.readouterr()
        assert captured.out == ""
        return info.value.code, data.getvalue(), captured.err.splitlines()

    return call


@pytest.mark.parametrize(("kind", "code", "line"), [
    ("invalid", 2, "error: model name 'a b' may not hold a space"),
    ("check", 1, "error: the audit chain breaks at event #3"),
    ("bug", 3, "error: internal error: ValueError: no state named 'x' second line "
               "(set APPLIANCE_DEBUG=1 for details)"),
    ("secret", 3, "error: internal error: RuntimeError: postgresql://app:***@db/x refused "
                  "apl_*** (set APPLIANCE_DEBUG=1 for details)"),
    ("ctrl-c", 130, "error: interrupted"),
    ("abort", 2, "error: aborted"),
])
def test_each_way_a_command_fails_is_its_code_and_one_line(entry, kind, code, line):
    got, data, err = entry("raise", kind)
    assert (got, err, data) == (code, [line], "")


def test_a_commands_exit_code_is_the_processes(entry):
    assert entry("raise", "exit") == (4, "", [])


def test_appliance_debug_shows_the_traceback_of_a_bug(entry, monkeypatch):
    monkeypatch.setenv("APPLIANCE_DEBUG", "1")
    code, _, err = entry("raise", "bug")
    assert code == 3 and err[0] == "Traceback (most recent call last):"
    assert "ValueError: no state named 'x'" in err
    assert err[-1].startswith("error: internal error: ValueError")


def test_a_usage_error_names_the_problem(entry):
    code, _, err = entry("raise")
    assert code == 2 and err == ["error: Missing argument 'kind'."]
    code, _, err = entry("raise", "bug", "--bogus")
    assert code == 2 and err == ["error: No such option: --bogus"]


def test_a_bare_appliance_prints_help_and_says_what_is_missing(monkeypatch, capsys):
    # No arguments: nothing is reserved, Typer prints the help on stdout.
    monkeypatch.setattr(_output, "_data_stream", None)
    with pytest.raises(SystemExit) as info:
        run([])
    captured = capsys.readouterr()
    assert info.value.code == 2
    assert "Usage:" in captured.out and "tokens" in captured.out
    assert captured.err == "error: Missing command.\n"


# --- in a process of its own -----------------------------------------------------------------

_PROGRAM = """
import sys, time
from appliance.cli import main
from appliance.cli._lazy import Command
from appliance.cli.commands import COMMANDS, RootGroup

def crash() -> None:
    print("noise a library printed")
    raise ZeroDivisionError("division by zero")

def wait() -> None:
    sys.stderr.write("waiting\\n")
    sys.stderr.flush()
    time.sleep(60)

RootGroup.COMMANDS = (*COMMANDS, Command("crash", "__main__:crash", ""),
                      Command("wait", "__main__:wait", ""))
main.run()
"""


def _start(command: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "APPLIANCE_DEBUG"}
    return subprocess.Popen([sys.executable, "-c", _PROGRAM, command], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_a_crash_exits_3_with_one_line_and_no_traceback():
    proc = _start("crash")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3
    assert out == ""  # what the command printed went to stderr: stdout is for data
    assert err.splitlines() == [
        "noise a library printed",
        "error: internal error: ZeroDivisionError: division by zero "
        "(set APPLIANCE_DEBUG=1 for details)",
    ]


def test_ctrl_c_exits_130_and_says_so():
    proc = _start("wait")
    try:
        assert proc.stderr.readline() == "waiting\n"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert (proc.returncode, out, err) == (130, "", "error: interrupted\n")
