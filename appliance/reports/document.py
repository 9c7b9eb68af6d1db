"""What a report is made of, independent of its format: sections of blocks.

A report (model card, audit report) is a title plus a list of `Section`s, each built by one
small function from the report's typed facts; `render_html` and `render_md` turn any of them
into a document. So adding a section is writing one builder and appending it to the report's
list of builders (`card_sections.SECTIONS`, `audit_sections.SECTIONS`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any


@dataclasses.dataclass(frozen=True)
class Text:
    """A paragraph."""

    text: str


@dataclasses.dataclass(frozen=True)
class Facts:
    """Label: value pairs, e.g. a model's owner and team."""

    pairs: list[tuple[str, Any]]


@dataclasses.dataclass(frozen=True)
class Table:
    """Rows under headers; `caption` says what they are."""

    headers: list[str]
    rows: list[list[Any]]
    caption: str = ""


@dataclasses.dataclass(frozen=True)
class Chart:
    """An inline SVG (`appliance.reports.svg`); formats without pictures show `table`."""

    svg: str
    caption: str
    table: Table | None = None


@dataclasses.dataclass(frozen=True)
class NotRecorded:
    """Nothing in the store for this part yet: said plainly, never left out silently."""

    what: str


Block = Text | Facts | Table | Chart | NotRecorded


@dataclasses.dataclass(frozen=True)
class Section:
    """One headed part of a report; `id` is stable (links, golden tests)."""

    id: str
    title: str
    blocks: list[Block]


@dataclasses.dataclass(frozen=True)
class Document:
    """A whole report: its title, a subtitle line, when it was generated, its sections."""

    title: str
    subtitle: str
    generated_at: dt.datetime
    sections: list[Section]


def cell(value: Any) -> str:
    """How a value reads in a table or a fact: times in RFC 3339, floats to 4 digits."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(cell(v) for v in value) or "—"
    if isinstance(value, dict):
        return ", ".join(f"{k}={cell(v)}" for k, v in value.items()) or "—"
    return str(value)
