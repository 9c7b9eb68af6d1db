"""The audit report's sections (`appliance.reports.audit_sections`) on a quiet month: every
section is there, in order, with empty tables and zero counts, nothing left out. A month with
everything in it: test_audit_report.py's golden files."""

from __future__ import annotations

from appliance.reports import audit_sections
from appliance.reports.document import Table


def test_every_section_is_there_in_order(quiet_month):
    doc = audit_sections.document(quiet_month)
    assert [s.id for s in doc.sections] == [fn(quiet_month).id for fn in audit_sections.SECTIONS]
    assert doc.sections[0].id == "summary" and "2026-01" in doc.title


def test_a_quiet_month_has_empty_tables_and_zero_counts(quiet_month):
    doc = audit_sections.document(quiet_month)
    assert [s.id for s in doc.sections] == [
        "summary", "promotions", "exceptions", "alerts", "access", "audit-chain", "reviews"]
    facts = dict(doc.sections[0].blocks[0].pairs)
    assert facts["Period"] == "2026-01-01 to 2026-02-01 (UTC, end exclusive)"
    assert facts["Audit chain"] == "intact"
    assert all(v == 0 for k, v in facts.items() if k not in ("Period", "Audit chain"))
    tables = [b for sec in doc.sections for b in sec.blocks if isinstance(b, Table)]
    assert len(tables) == 12 and all(t.rows == [] and t.caption for t in tables)
    alerts = dict(doc.sections[3].blocks[0].pairs)
    assert alerts == {"Raised": 0, "Acknowledged": 0, "Resolved": 0, "Not yet resolved": 0,
                      "Median minutes to acknowledge": None}  # no alert: no median, not 0
    chain = dict(doc.sections[5].blocks[1].pairs)
    assert (chain["Result"], chain["Events"], chain["First bad event"]) == ("intact", 0, None)
