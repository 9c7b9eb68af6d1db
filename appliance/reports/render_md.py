"""A `Document` as Markdown: charts become the table of the numbers they plot."""

from __future__ import annotations

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


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table(table: Table) -> list[str]:
    if not table.rows:
        return [f"_No {table.caption or 'rows'}._", ""]
    lines = [f"*{table.caption}*", ""] if table.caption else []
    lines.append("| " + " | ".join(_escape(h) for h in table.headers) + " |")
    lines.append("|" + "---|" * len(table.headers))
    lines += ["| " + " | ".join(_escape(cell(v)) for v in row) + " |" for row in table.rows]
    return [*lines, ""]


def _block(block: Block) -> list[str]:
    if isinstance(block, Text):
        return [block.text, ""]
    if isinstance(block, Facts):
        return [*(f"- **{k}**: {_escape(cell(v))}" for k, v in block.pairs), ""]
    if isinstance(block, Table):
        return _table(block)
    if isinstance(block, Chart):
        return _table(block.table) if block.table else [f"_{block.caption}_", ""]
    if isinstance(block, NotRecorded):
        return [f"_{block.what}_", ""]
    raise TypeError(f"unknown report block {type(block).__name__}")


def render(doc: Document) -> str:
    """The whole document; each section is a ``## Title {#id}`` heading."""
    lines = [f"# {doc.title}", "", f"{doc.subtitle} · generated {cell(doc.generated_at)}", ""]
    for section in doc.sections:
        lines += [f"## {section.title} {{#{section.id}}}", ""]
        for block in section.blocks:
            lines += _block(block)
    return "\n".join(lines).rstrip() + "\n"
