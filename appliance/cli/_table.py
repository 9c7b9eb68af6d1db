"""Plain tables for humans: one resource per row, NAME first, placeholders for empty cells."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from appliance.cli._output import data_stream

# Off a terminal (a pipe, a file) no row is cut to a width: a cell reaches grep whole. The
# table takes only the width its cells need.
_UNBOUNDED = 1_000_000


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "<none>"
    if isinstance(value, dt.datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print `rows` under `headers` (upper-cased) on the data stream; an empty cell shows
    ``<none>``, a time RFC 3339 to the second, a float four significant digits."""
    table = Table(box=None, pad_edge=False, header_style="bold")
    for h in headers:
        table.add_column(h.upper(), no_wrap=True)
    for row in rows:
        # As Text, not str: rich would read a value's "[...]" as markup, dropping it or
        # failing on a stray "[/]".
        table.add_row(*(Text(_cell(v)) for v in row))
    out = data_stream()
    Console(file=out, width=None if out.isatty() else _UNBOUNDED).print(table)
