"""`--json` and `--json=FIELDS`: a command's typed record, whole or only some of its fields.

Every command that prints JSON declares its option with `json_option(Record)` (or
``json_option(list[Record])`` for a listing), so the record behind each command's document is
written down once and checked: tests/cli/test_json_schemas.py holds each record's JSON schema
as a golden file. As with `gh`, ``--json=name,version`` prints only those fields, in that order,
and a field the record does not have fails before the command does anything, listing the ones
it has.

Why ``--json=FIELDS`` needs its ``=``: the bare ``--json`` flag (the whole record) is a contract
scripts rely on, and in ``--json credit`` the word could be a field list or the command's next
argument. Typer's parser has no option with an optional value, so the root group takes
``--json=FIELDS`` apart before parsing (`split_fields`): the flag stays, the names travel in the
context's ``meta``, which every subcommand's context shares.
"""

from __future__ import annotations

import contextvars
import dataclasses
import typing
from typing import Any

import typer

from appliance.errors import InvalidInput

META_KEY = "appliance.json_fields"
# The fields the running command was asked for (None: all of them); set by the option's
# callback, which runs for every invocation of a command that has the option.
_selected: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar(
    "json_fields", default=None)


def split_fields(args: list[str]) -> tuple[list[str], tuple[str, ...] | None]:
    """`args` with ``--json=FIELDS`` turned into ``--json``, and the field names asked for
    (None when no ``--json=`` was given; ``()`` for ``--json=`` with nothing after it)."""
    out: list[str] = []
    fields: tuple[str, ...] | None = None
    for i, arg in enumerate(args):
        if arg == "--":  # what follows is positional, whatever it looks like
            out.extend(args[i:])
            break
        if arg.startswith("--json="):
            names = [n.strip() for n in arg[len("--json="):].split(",")]
            fields = tuple(n for n in names if n)
            out.append("--json")
        else:
            out.append(arg)
    return out, fields


def record_fields(record: Any) -> list[str]:
    """The top-level JSON field names of `record` (a pydantic model or dataclass, or a list
    of one)."""
    if typing.get_origin(record) is list:
        (record,) = typing.get_args(record)
    if dataclasses.is_dataclass(record):
        return [f.name for f in dataclasses.fields(record)]
    # The names the document is printed with (`_output.emit_json` dumps by alias), as the
    # record's JSON schema lists them: `alias=` sets the serialization alias too, and computed
    # fields (`DoctorReport.ok`) are printed after the others.
    return ([info.serialization_alias or name for name, info in record.model_fields.items()]
            + [info.alias or name for name, info in record.model_computed_fields.items()])


def _check(record: Any):
    def check(ctx: typer.Context, value: bool) -> bool:
        fields = ctx.meta.get(META_KEY)
        if fields is not None and not value:  # pragma: no cover - split_fields sets both
            raise InvalidInput("--json=FIELDS needs --json")
        if fields is not None:
            available = record_fields(record)
            if not fields:
                raise InvalidInput(f"--json= names no field; available fields: "
                                   f"{', '.join(available)}")
            unknown = [f for f in fields if f not in available]
            if unknown:
                raise InvalidInput(f"--json: unknown field {unknown[0]!r}; available fields: "
                                   f"{', '.join(available)}")
        _selected.set(fields if value else None)
        return value

    check.json_record = record  # read by tests/cli/test_json_schemas.py
    return check


def json_option(record: Any, help: str = "Print the result as JSON.") -> Any:
    """The ``--json`` option of a command whose JSON document is `record`: a pydantic model
    class (or a dataclass), or ``list[Model]`` for a command that prints a list of them."""
    return typer.Option(
        False, "--json", callback=_check(record),
        help=f"{help} --json=a,b prints only those fields; --json= lists them.",
    )


def select(document: Any) -> Any:
    """`document` (already JSON-ready: dicts and lists) cut down to the fields asked for.

    A field the record has but this document leaves out (`DriftReportPublic` drops
    ``multivariate`` when no PCA was computed) is null, as the record's schema allows.
    """
    fields = _selected.get()
    if fields is None:
        return document
    if isinstance(document, list):
        return [{f: item.get(f) for f in fields} for item in document]
    return {f: document.get(f) for f in fields}
