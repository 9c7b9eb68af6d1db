"""Plain tables for humans: one resource per row, NAME first, placeholders for empty cells."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from appliance.cli._output import data_stream


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "<none>"
    if isinstance(value, dt.datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for h in headers:
        table.add_column(h.upper(), no_wrap=True)
    for row in rows:
        table.add_row(*(_cell(v) for v in row))
    out = data_stream()
    Console(file=out, width=None if out.isatty() else 200).print(table)
