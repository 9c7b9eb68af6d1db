"""The monthly audit report's facts: who promoted what and who let them, what was rolled
back or overridden, who tried to approve their own request, how alerts were handled, who
got access, whether the audit chain is intact, and which reviews are overdue.

Everything comes from the store's rows and the audit chain; `build_audit_report` returns a
typed `AuditReportPublic` (what ``--format json`` emits); `audit_sections` renders it.
"""

from __future__ import annotations

import datetime as dt
import re
import statistics
from typing import TYPE_CHECKING

from sqlmodel import Session, SQLModel, col, or_, select

from appliance.errors import InvalidInput
from appliance.governance import audit, reviews
from appliance.governance.audit import AuditEntryPublic, VerifyResult
from appliance.governance.gate_checks import GateCheckResult, GateResult
from appliance.governance.reviews import ReviewPublic, ReviewStatusPublic
from appliance.store.models import (
    Alert,
    Approval,
    ApprovalVote,
    AuditEvent,
    Dataset,
    ModelReview,
    ModelVersion,
    utcnow,
)

if TYPE_CHECKING:
    from appliance.config import Config

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
# Audit actions that change who may do what.
ACCESS_PREFIXES = ("user.", "token.")
SELF_APPROVAL = "model.promotion.self_approval_refused"


class PromotionAuditPublic(SQLModel):
    """One promotion request opened or decided in the month."""

    approval: int
    model: str
    version: int
    alias: str
    status: str
    requested_by: str
    requested_at: dt.datetime
    required_approvals: int
    approved_by: list[str]
    rejected_by: list[str]
    decided_by: str | None
    decided_at: dt.datetime | None
    hours_to_decision: float | None
    gate_passed: bool
    gate_checks: list[GateCheckResult]


class ContractOverridePublic(SQLModel):
    """A dataset version whose failed data contract someone accepted to train anyway."""

    dataset: str
    version: int
    contract_status: str
    accepted_by: str
    reason: str | None
    accepted_at: dt.datetime


class AlertAuditPublic(SQLModel):
    """One alert raised, acknowledged or resolved in the month, and how fast people were."""

    id: int
    model: str
    kind: str
    rule: str
    severity: str
    status: str
    raised_at: dt.datetime
    acknowledged_by: str | None
    acknowledged_at: dt.datetime | None
    minutes_to_acknowledge: float | None
    resolved_by: str | None
    resolved_at: dt.datetime | None
    minutes_to_resolve: float | None
    resolution: str | None


class AlertSummaryPublic(SQLModel):
    """Counts of the month's alert events, and the median time to acknowledge."""

    raised: int
    acknowledged: int
    resolved: int
    still_open: int
    median_minutes_to_acknowledge: float | None


class AuditReportPublic(SQLModel):
    """Everything the monthly audit report says, as typed facts."""

    month: str
    period_start: dt.datetime
    period_end: dt.datetime
    promotions: list[PromotionAuditPublic]
    gate_failures: list[AuditEntryPublic]
    rollbacks: list[AuditEntryPublic]
    contract_overrides: list[ContractOverridePublic]
    self_approval_attempts: list[AuditEntryPublic]
    alerts: list[AlertAuditPublic]
    alert_summary: AlertSummaryPublic
    access_changes: list[AuditEntryPublic]
    governance_changes: list[AuditEntryPublic]
    reviews: list[ReviewPublic]
    overdue_reviews: list[ReviewStatusPublic]
    audit_chain: VerifyResult
    generated_at: dt.datetime


def parse_month(text: str) -> tuple[dt.datetime, dt.datetime]:
    """The UTC start of month `text` ("YYYY-MM") and the start of the next.

    Raises:
        InvalidInput: not a YYYY-MM month.
    """
    match = _MONTH.match(text or "")
    if not match or not 1 <= int(match.group(2)) <= 12 or int(match.group(1)) < 1970:
        raise InvalidInput(f"month {text!r} must be YYYY-MM, e.g. {utcnow():%Y-%m}")
    year, month = int(match.group(1)), int(match.group(2))
    start = dt.datetime(year, month, 1, tzinfo=dt.timezone.utc)
    end = dt.datetime(year + month // 12, month % 12 + 1, 1, tzinfo=dt.timezone.utc)
    return start, end


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=dt.timezone.utc)


def _minutes(start: dt.datetime | None, end: dt.datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round((_aware(end) - _aware(start)).total_seconds() / 60.0, 2)


def _events(session: Session, start: dt.datetime, end: dt.datetime, *, actions: tuple = (),
            prefixes: tuple = ()) -> list[AuditEntryPublic]:
    clauses = [AuditEvent.action == a for a in actions]
    clauses += [col(AuditEvent.action).startswith(p) for p in prefixes]
    rows = session.exec(select(AuditEvent).where(
        AuditEvent.ts >= start, AuditEvent.ts < end, or_(*clauses),
    ).order_by(col(AuditEvent.id))).all()
    return [AuditEntryPublic(id=e.id, ts=e.ts, actor=e.actor, action=e.action,
                             object_type=e.object_type, object_id=e.object_id,
                             details=e.details or {}) for e in rows]


def _promotions(session: Session, start: dt.datetime, end: dt.datetime
                ) -> list[PromotionAuditPublic]:
    rows = session.exec(select(Approval).where(or_(
        (Approval.requested_at >= start) & (Approval.requested_at < end),
        (Approval.decided_at >= start) & (Approval.decided_at < end),
    )).order_by(col(Approval.id))).all()
    out = []
    for a in rows:
        votes = session.exec(select(ApprovalVote).where(ApprovalVote.approval_id == a.id)
                             .order_by(col(ApprovalVote.id))).all()
        verdict = (GateResult.from_dict(a.gate) if a.gate.get("checks") is not None
                   else GateResult(passed=True, checks=[]))
        minutes = _minutes(a.requested_at, a.decided_at)
        out.append(PromotionAuditPublic(
            approval=a.id, model=a.model_name,
            version=session.get(ModelVersion, a.version_id).version, alias=a.target_alias,
            status=a.status, requested_by=a.requested_by, requested_at=a.requested_at,
            required_approvals=a.required_approvals,
            approved_by=[v.voter for v in votes if v.decision == "approved"],
            rejected_by=[v.voter for v in votes if v.decision == "rejected"],
            decided_by=a.decided_by, decided_at=a.decided_at,
            hours_to_decision=round(minutes / 60.0, 2) if minutes is not None else None,
            gate_passed=verdict.passed, gate_checks=verdict.checks))
    return out


def _in(value: dt.datetime | None, start: dt.datetime, end: dt.datetime) -> bool:
    return value is not None and start <= _aware(value) < end


def _alerts(session: Session, start: dt.datetime, end: dt.datetime
            ) -> tuple[list[AlertAuditPublic], AlertSummaryPublic]:
    rows = session.exec(select(Alert).where(or_(
        (Alert.created_at >= start) & (Alert.created_at < end),
        (Alert.acknowledged_at >= start) & (Alert.acknowledged_at < end),
        (Alert.resolved_at >= start) & (Alert.resolved_at < end),
    )).order_by(col(Alert.id))).all()
    out = [AlertAuditPublic(
        id=a.id, model=a.model_name, kind=a.kind, rule=a.rule, severity=a.severity,
        status=a.status, raised_at=a.created_at, acknowledged_by=a.acknowledged_by,
        acknowledged_at=a.acknowledged_at,
        minutes_to_acknowledge=_minutes(a.created_at, a.acknowledged_at),
        resolved_by=a.resolved_by, resolved_at=a.resolved_at,
        minutes_to_resolve=_minutes(a.created_at, a.resolved_at), resolution=a.resolution)
        for a in rows]
    acked = [a.minutes_to_acknowledge for a in out
             if _in(a.acknowledged_at, start, end) and a.minutes_to_acknowledge is not None]
    summary = AlertSummaryPublic(
        raised=sum(_in(a.raised_at, start, end) for a in out),
        acknowledged=sum(_in(a.acknowledged_at, start, end) for a in out),
        resolved=sum(_in(a.resolved_at, start, end) for a in out),
        still_open=sum(a.status != "resolved" for a in out),
        median_minutes_to_acknowledge=round(statistics.median(acked), 2) if acked else None)
    return out, summary


def build_audit_report(session: Session, month: str, cfg: Config | None = None,
                       now: dt.datetime | None = None) -> AuditReportPublic:
    """The audit report of `month` ("YYYY-MM", UTC).

    Args:
        session: an open session (read only).
        month: the month reported on.
        cfg: whose audit key and checkpoint sink verify the chain (default: the configured).
        now: when the report is generated (default now); overdue reviews are as of the end
            of the month, or `now` if that comes first.

    Raises:
        InvalidInput: a malformed month, or one that has not started yet.
    """
    now = now or utcnow()
    start, end = parse_month(month)
    if start > now:
        raise InvalidInput(f"month {month!r} has not started yet")
    overrides = session.exec(select(Dataset).where(
        Dataset.contract_accepted_at >= start, Dataset.contract_accepted_at < end,
    ).order_by(col(Dataset.contract_accepted_at))).all()
    alerts, summary = _alerts(session, start, end)
    recorded = session.exec(select(ModelReview).where(
        ModelReview.reviewed_at >= start, ModelReview.reviewed_at < end,
    ).order_by(col(ModelReview.reviewed_at))).all()
    return AuditReportPublic(
        month=month, period_start=start, period_end=end,
        promotions=_promotions(session, start, end),
        gate_failures=_events(session, start, end, actions=("model.gate.failed",)),
        rollbacks=_events(session, start, end, actions=("model.rolled_back",)),
        contract_overrides=[ContractOverridePublic(
            dataset=d.name, version=d.version, contract_status=d.contract_status,
            accepted_by=d.contract_accepted_by or "", reason=d.contract_accepted_reason,
            accepted_at=d.contract_accepted_at) for d in overrides],
        self_approval_attempts=_events(session, start, end, actions=(SELF_APPROVAL,)),
        alerts=alerts, alert_summary=summary,
        access_changes=_events(session, start, end, prefixes=ACCESS_PREFIXES),
        governance_changes=_events(session, start, end,
                                   actions=("model.updated", "policy.updated",
                                            "audit.anchored")),
        reviews=[reviews.to_public(r) for r in recorded],
        overdue_reviews=reviews.overdue(session, min(end, now)),
        audit_chain=audit.verify(session, cfg), generated_at=now)
