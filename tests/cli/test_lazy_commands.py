"""`appliance.cli.commands` / `_lazy`: each row says what its command's own help says, help
lists every row without importing a command module, and running a command builds it."""

from __future__ import annotations

import inspect

import pytest
import typer
import typer.main

from appliance.cli._lazy import build
from appliance.cli.commands import COMMANDS
from appliance.cli.main import app


def _first_paragraph(cmd) -> str:
    return inspect.cleandoc(cmd.short_help or cmd.help or "").split("\n\n")[0]


@pytest.mark.parametrize("row", COMMANDS, ids=lambda r: r.name)
def test_each_row_summarises_its_command_as_the_command_does(row):
    cmd = build(row)
    assert cmd.name == row.name
    assert row.summary == _first_paragraph(cmd), (
        f"the summary of {row.name!r} in appliance/cli/commands.py differs from its help; "
        "copy the first paragraph of its docstring (or its Typer's help)"
    )


def test_rows_are_unique_and_the_root_group_resolves_them_all():
    names = [r.name for r in COMMANDS]
    assert len(names) == len(set(names))
    group = typer.main.get_command(app)
    assert group.list_commands(None) == names
    for name in names:
        cmd = group.get_command(None, name)
        assert cmd is not None and cmd.name == name, name
    assert group.get_command(None, "no-such-command") is None


def test_a_typo_still_gets_a_suggestion():
    group = typer.main.get_command(app)
    with pytest.raises(Exception, match="Did you mean 'status'") as info:
        group.main(["stauts"], standalone_mode=False)
    assert type(info.value).__name__ == "UsageError"
