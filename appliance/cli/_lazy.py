"""A root command group that imports a command's module only when that command runs.

Every command module imports what its commands use (sqlmodel, pyarrow, the pipelines, and
through them numpy and more); importing all of them cost ``appliance --help`` over a second.
`LazyGroup` knows each command from a `Command` row instead: its name, where it lives
(``"module:attribute"``) and the one-line summary ``appliance --help`` shows. Listing the
commands for help renders those rows; resolving a command to run it (or to show its own help)
imports its module and builds the Click command exactly as ``app.command(name)(function)`` or
``app.add_typer(sub_app, name=name)`` would have.

tests/cli/test_commands.py checks that each row's summary is the command's own.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

import typer
import typer.main
from typer.core import TyperCommand, TyperGroup


@dataclasses.dataclass(frozen=True)
class Command:
    """One command of the root group.

    Args:
        name: what the user types.
        target: ``"module:attribute"``: a command function, or a `typer.Typer` of subcommands.
        summary: the first paragraph of the command's help, as written in its docstring (or its
            Typer's ``help``), shown by ``appliance --help``.
    """

    name: str
    target: str
    summary: str

    def load(self) -> Any:
        """The command function or sub-app, its module imported now."""
        module, _, attribute = self.target.partition(":")
        return getattr(importlib.import_module(module), attribute)


def build(command: Command) -> Any:
    """The Click command for `command`, built through Typer as eager registration builds it."""
    target = command.load()
    holder = typer.Typer()
    if isinstance(target, typer.Typer):
        holder.add_typer(target, name=command.name)
    else:
        holder.command(command.name)(target)
    return typer.main.get_group(holder).commands[command.name]


class LazyGroup(TyperGroup):
    """A `TyperGroup` whose commands are the `COMMANDS` rows, each built when first resolved.

    Set ``COMMANDS`` on a subclass (`appliance.cli.commands.RootGroup`).
    """

    COMMANDS: tuple[Command, ...] = ()

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self._rows = {c.name: c for c in self.COMMANDS}
        self._listing = False
        # A placeholder per row keeps Typer's "Did you mean ...?" (it reads the keys) and the
        # order of `list_commands`; `get_command` replaces it with the real command.
        for name in self._rows:
            self.commands.setdefault(name, None)  # type: ignore[arg-type]

    def list_commands(self, ctx: Any) -> list[str]:
        return list(self.commands)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        cmd = self.commands.get(cmd_name)
        if cmd is not None or cmd_name not in self._rows:
            return cmd
        row = self._rows[cmd_name]
        if self._listing:
            # Help lists a name and a summary: a stand-in carries both, and no import.
            return TyperCommand(row.name, help=row.summary)
        cmd = self.commands[cmd_name] = build(row)
        return cmd

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False
