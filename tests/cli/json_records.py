"""Which record each command's ``--json`` declares, read from the command functions."""

from __future__ import annotations

import inspect

import typer
from typer.models import OptionInfo

from appliance.cli.commands import COMMANDS


def _functions(prefix: tuple[str, ...], target) -> list[tuple[tuple[str, ...], object]]:
    if not isinstance(target, typer.Typer):
        return [(prefix, target)]
    found = []
    for info in target.registered_commands:
        name = info.name or info.callback.__name__.replace("_", "-")
        found.append(((*prefix, name), info.callback))
    for group in target.registered_groups:
        found += _functions((*prefix, group.name), group.typer_instance)
    return found


def json_commands() -> dict[tuple[str, ...], object]:
    """Each command with a ``--json`` option -> the record it declares (None: none)."""
    out = {}
    for row in COMMANDS:
        for path, function in _functions((row.name,), row.load()):
            for param in inspect.signature(function).parameters.values():
                option = param.default
                if isinstance(option, OptionInfo) and "--json" in (option.param_decls or ()):
                    out[path] = getattr(option.callback, "json_record", None)
    return out


def record_of(args: tuple[str, ...]) -> object:
    """The record declared by the command that `args` (a command line) runs."""
    commands = json_commands()
    for n in range(len(args), 0, -1):
        if tuple(args[:n]) in commands:
            return commands[tuple(args[:n])]
    raise KeyError(args)
