"""A `Document` as one self-contained HTML page: inline CSS and SVG, no outside resource."""

from __future__ import annotations

from html import escape

from appliance.reports.document import (
    Block,
    Chart,
    Document,
    Facts,
    NotRecorded,
    Table,
    Text,
    cell,
)

_CSS = """
body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}
h1{margin-bottom:0}.subtitle{color:#555;margin-top:.2em}
section{border-top:1px solid #ccc;margin-top:1.5em}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}
th,td{border:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#f4f4f4}dl.facts{display:grid;grid-template-columns:max-content auto;gap:2px 12px}
dl.facts dt{font-weight:bold}dl.facts dd{margin:0}
.not-recorded{color:#8a5a00;font-style:italic}figure{margin:.8em 0}
figcaption{color:#555;font-size:.85em}nav ul{columns:2}
"""


def _table(table: Table) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in table.headers)
    body = "".join("<tr>" + "".join(f"<td>{escape(cell(v))}</td>" for v in row) + "</tr>"
                   for row in table.rows)
    caption = f"<caption>{escape(table.caption)}</caption>" if table.caption else ""
    return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _block(block: Block) -> str:
    if isinstance(block, Text):
        return f"<p>{escape(block.text)}</p>"
    if isinstance(block, Facts):
        items = "".join(f"<dt>{escape(k)}</dt><dd>{escape(cell(v))}</dd>"
                        for k, v in block.pairs)
        return f'<dl class="facts">{items}</dl>'
    if isinstance(block, Table):
        return _table(block) if block.rows else (
            f'<p class="not-recorded">No {escape(block.caption or "rows")}.</p>')
    if isinstance(block, Chart):
        # The SVG is built by appliance.reports.svg, which escapes every value it writes.
        return (f'<figure class="chart">{block.svg}'
                f"<figcaption>{escape(block.caption)}</figcaption></figure>")
    if isinstance(block, NotRecorded):
        return f'<p class="not-recorded" data-missing="true">{escape(block.what)}</p>'
    raise TypeError(f"unknown report block {type(block).__name__}")


def render(doc: Document) -> str:
    """The whole page; each section is ``<section id=...>`` with an ``<h2>``."""
    nav = "".join(f'<li><a href="#{escape(s.id)}">{escape(s.title)}</a></li>'
                  for s in doc.sections)
    sections = "".join(
        f'<section id="{escape(s.id)}"><h2>{escape(s.title)}</h2>'
        + "".join(_block(b) for b in s.blocks) + "</section>"
        for s in doc.sections)
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{escape(doc.title)}</title>'
        f"<style>{_CSS}</style></head><body>"
        f"<h1>{escape(doc.title)}</h1>"
        f'<p class="subtitle">{escape(doc.subtitle)} · generated '
        f'<time>{escape(cell(doc.generated_at))}</time></p>'
        f"<nav><ul>{nav}</ul></nav>{sections}</body></html>\n"
    )
