"""One entry point from a report's facts to a document in the format asked for."""

from __future__ import annotations

import json

from appliance.errors import InvalidInput
from appliance.reports import audit_sections, card_sections, render_html, render_md
from appliance.reports.audit_report import AuditReportPublic
from appliance.reports.model_card import ModelCardPublic

FORMATS = ("html", "md", "json")


def render(report: ModelCardPublic | AuditReportPublic, fmt: str) -> str:
    """`report` as text in `fmt`: "html" (self-contained), "md" or "json" (the typed facts).

    Raises:
        InvalidInput: an unknown format.
    """
    if fmt not in FORMATS:
        raise InvalidInput(f"unknown report format {fmt!r}; use {', '.join(FORMATS)}")
    if fmt == "json":
        return json.dumps(report.model_dump(mode="json"), indent=2) + "\n"
    layout = card_sections if isinstance(report, ModelCardPublic) else audit_sections
    doc = layout.document(report)
    return render_html.render(doc) if fmt == "html" else render_md.render(doc)
