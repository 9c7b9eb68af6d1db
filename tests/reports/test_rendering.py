"""One entry point from a report to its text (`appliance.reports.rendering`): JSON is the typed
record itself, HTML and Markdown come from the report's own sections, an unknown format is
refused naming the known ones."""

from __future__ import annotations

import json

import pytest

from appliance.errors import InvalidInput
from appliance.reports import audit_sections, render_html, render_md
from appliance.reports.audit_report import AuditReportPublic
from appliance.reports.rendering import FORMATS, render


def test_json_is_the_typed_record(quiet_month):
    doc = json.loads(render(quiet_month, "json"))
    assert AuditReportPublic.model_validate(doc) == quiet_month
    assert doc["month"] == "2026-01" and doc["audit_chain"]["ok"] is True


def test_html_and_markdown_render_the_reports_own_sections(quiet_month):
    document = audit_sections.document(quiet_month)
    assert render(quiet_month, "html") == render_html.render(document)
    assert render(quiet_month, "md") == render_md.render(document)
    assert render(quiet_month, "md").startswith("# Audit report 2026-01\n")


def test_an_unknown_format_is_refused(quiet_month):
    assert FORMATS == ("html", "md", "json")
    with pytest.raises(InvalidInput, match="unknown report format 'pdf'; use html, md, json"):
        render(quiet_month, "pdf")
