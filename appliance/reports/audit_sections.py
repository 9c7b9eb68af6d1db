"""The monthly audit report's sections, in order: one builder per section from
`AuditReportPublic`. Add a section by writing a builder and listing it in `SECTIONS`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from appliance.reports import svg
from appliance.reports.audit_report import AuditEntryPublic, AuditReportPublic
from appliance.reports.document import Chart, Document, Facts, Section, Table, Text


def _entries(entries: list[AuditEntryPublic], caption: str) -> Table:
    return Table(["event", "time", "actor", "action", "object", "details"],
                 [[e.id, e.ts, e.actor, e.action, f"{e.object_type} {e.object_id}", e.details]
                  for e in entries], caption)


def summary(r: AuditReportPublic) -> Section:
    chain = r.audit_chain
    return Section("summary", "Summary", [
        Facts([("Period", f"{r.period_start:%Y-%m-%d} to {r.period_end:%Y-%m-%d} (UTC, end "
                          "exclusive)"),
               ("Promotion requests", len(r.promotions)),
               ("Promotions approved", sum(p.status == "approved" for p in r.promotions)),
               ("Gate failures", len(r.gate_failures)), ("Rollbacks", len(r.rollbacks)),
               ("Data contracts overridden", len(r.contract_overrides)),
               ("Self-approval attempts refused", len(r.self_approval_attempts)),
               ("Alerts raised", r.alert_summary.raised),
               ("Access changes", len(r.access_changes)),
               ("Reviews recorded", len(r.reviews)),
               ("Reviews overdue", len(r.overdue_reviews)),
               ("Audit chain", "intact" if chain.ok else f"FAILED: {chain.reason}")]),
    ])


def promotions(r: AuditReportPublic) -> Section:
    return Section("promotions", "Promotions", [
        Table(["request", "model", "version", "alias", "status", "requested by",
               "requested at", "needed", "approved by", "rejected by", "decided at",
               "hours to decision", "gate", "failed checks"],
              [[p.approval, p.model, p.version, p.alias, p.status, p.requested_by,
                p.requested_at, p.required_approvals, p.approved_by, p.rejected_by,
                p.decided_at, p.hours_to_decision, "passed" if p.gate_passed else "failed",
                [c.name for c in p.gate_checks if not c.passed]] for p in r.promotions],
              "promotion requests opened or decided this month"),
        Table(["request", "check", "kind", "measured", "limit", "passed"],
              [[p.approval, c.name, c.kind, c.measured, c.limit, c.passed]
               for p in r.promotions for c in p.gate_checks],
              "gate results of those requests"),
        _entries(r.gate_failures, "gate runs that failed (no request opened)"),
    ])


def exceptions(r: AuditReportPublic) -> Section:
    return Section("exceptions", "Rollbacks, overrides and self-approval attempts", [
        _entries(r.rollbacks, "rollbacks"),
        Table(["dataset", "version", "contract", "accepted by", "reason", "accepted at"],
              [[o.dataset, o.version, o.contract_status, o.accepted_by, o.reason,
                o.accepted_at] for o in r.contract_overrides],
              "data contracts overridden"),
        _entries(r.self_approval_attempts, "self-approval attempts (refused)"),
    ])


def alerts(r: AuditReportPublic) -> Section:
    s = r.alert_summary
    blocks = [Facts([("Raised", s.raised), ("Acknowledged", s.acknowledged),
                     ("Resolved", s.resolved), ("Not yet resolved", s.still_open),
                     ("Median minutes to acknowledge", s.median_minutes_to_acknowledge)])]
    by_kind = Counter(a.kind for a in r.alerts)
    if by_kind:
        blocks.append(Chart(svg.bar_chart("Alerts by kind", sorted(by_kind.items())),
                            "Alerts by kind",
                            Table(["kind", "alerts"], [list(i) for i in sorted(by_kind.items())])))
    blocks.append(Table(
        ["alert", "model", "kind", "rule", "severity", "status", "raised", "acknowledged by",
         "minutes to ack", "resolved by", "minutes to resolve", "resolution"],
        [[a.id, a.model, a.kind, a.rule, a.severity, a.status, a.raised_at, a.acknowledged_by,
          a.minutes_to_acknowledge, a.resolved_by, a.minutes_to_resolve, a.resolution]
         for a in r.alerts], "alerts raised, acknowledged or resolved this month"))
    return Section("alerts", "Alerts", blocks)


def access(r: AuditReportPublic) -> Section:
    return Section("access", "Access changes", [
        _entries(r.access_changes, "users, roles and tokens"),
        _entries(r.governance_changes, "model governance and policy changes"),
    ])


def audit_chain(r: AuditReportPublic) -> Section:
    c = r.audit_chain
    return Section("audit-chain", "Audit chain verification", [
        Text("The audit log is an HMAC chain with signed checkpoints outside the database; "
             "this is `appliance audit verify` at the time the report was generated."),
        Facts([("Result", "intact" if c.ok else "FAILED"), ("Events", c.events),
               ("Head", c.head), ("First bad event", c.broken_at), ("Reason", c.reason),
               ("Key", c.key_id), ("Checkpoint events", c.checkpoint_events),
               ("Checkpoint taken", c.checkpoint_at)]),
        Table(["finding"], [[f] for f in c.findings], "findings"),
    ])


def review_section(r: AuditReportPublic) -> Section:
    return Section("reviews", "Periodic reviews", [
        Table(["model", "reviewer", "reviewed at", "version", "notes", "next due"],
              [[v.model, v.reviewer, v.reviewed_at, v.version, v.notes, v.next_due_at]
               for v in r.reviews], "reviews recorded this month"),
        Table(["model", "risk tier", "interval (days)", "last reviewed", "due", "days overdue"],
              [[o.model, o.risk_tier, o.interval_days, o.last_reviewed_at, o.due_at,
                o.days_overdue] for o in r.overdue_reviews],
              "overdue reviews at the end of the period"),
    ])


# The report, in reading order. Add a section here.
SECTIONS: list[Callable[[AuditReportPublic], Section]] = [
    summary, promotions, exceptions, alerts, access, audit_chain, review_section,
]


def document(report: AuditReportPublic) -> Document:
    """The report as a `Document` for `render_html` / `render_md`."""
    return Document(title=f"Audit report {report.month}",
                    subtitle="promotions, exceptions, alerts, access and the audit chain",
                    generated_at=report.generated_at,
                    sections=[build(report) for build in SECTIONS])
