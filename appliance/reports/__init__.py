"""Reports for auditors and risk officers: model cards and the monthly audit report.

Each report is gathered from the store as typed facts (`build_model_card`,
`build_audit_report`), laid out as sections (`card_sections`, `audit_sections`), and rendered
as self-contained HTML (inline SVG plots) or Markdown (`render`).
"""

from __future__ import annotations

from appliance.reports.audit_report import AuditReportPublic, build_audit_report, parse_month
from appliance.reports.model_card import ModelCardPublic, build_model_card
from appliance.reports.rendering import FORMATS, render

__all__ = [
    "AuditReportPublic",
    "FORMATS",
    "ModelCardPublic",
    "build_audit_report",
    "build_model_card",
    "parse_month",
    "render",
]
