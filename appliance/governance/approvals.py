"""The promotion gate and four-eyes approval.

A candidate first passes an automated gate (absolute metric floors, and no worse than the current
holder of the alias beyond a tolerance, both measured on the same evaluation data). Passing opens
an approval request; a different user with the approver role approves it, and only then does the
alias move. Every step is an audit event.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlmodel import Session, select

from appliance.errors import CheckFailed, ConflictError, NotFound, PermissionDenied
from appliance.governance import audit
from appliance.governance.users import require
from appliance.store.models import Alias, Approval, ApprovalStatus, ModelVersion, User, utcnow

DEFAULT_FLOORS = {"accuracy": 0.70, "auc": 0.70}
DEFAULT_TOLERANCE = 0.01  # metric points the candidate may trail the incumbent by


@dataclasses.dataclass
class GateResult:
    """The gate's verdict, with one entry per check."""

    passed: bool
    checks: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "checks": self.checks}


def gate(
    candidate: dict[str, float],
    incumbent: dict[str, float] | None = None,
    *,
    floors: dict[str, float] | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> GateResult:
    """Check `candidate` metrics against floors and the `incumbent`'s, higher being better.

    Args:
        candidate: the candidate's metrics on the evaluation data.
        incumbent: the current alias holder's metrics on the same data, or None (default) if
            the alias is empty.
        floors: metric -> minimum (default `DEFAULT_FLOORS`).
        tolerance: how far below the incumbent the candidate may be (default 0.01).
    """
    checks = []
    for metric, floor in (floors or DEFAULT_FLOORS).items():
        value = candidate.get(metric)
        ok = value is not None and value >= floor
        checks.append({"check": f"{metric} >= {floor}", "value": value, "passed": ok})
    if incumbent:
        for metric in (floors or DEFAULT_FLOORS):
            if metric in incumbent and metric in candidate:
                ok = candidate[metric] >= incumbent[metric] - tolerance
                checks.append({
                    "check": f"{metric} >= incumbent - {tolerance}",
                    "value": candidate[metric],
                    "incumbent": incumbent[metric],
                    "passed": ok,
                })
    return GateResult(all(c["passed"] for c in checks), checks)


def request_promotion(
    session: Session, user: User, version: ModelVersion, alias: str, result: GateResult,
    evidence: dict[str, Any] | None = None,
) -> Approval:
    """Record a gated promotion request by `user`; CheckFailed if the gate said no.

    Args:
        session: an open session; the caller commits.
        user: the requester (needs "operate"); may not approve it later.
        version: the candidate.
        alias: the alias it would take, e.g. "champion".
        result: the gate's verdict on the candidate.
        evidence: more results the approver should see, e.g. {"canary": {...}} (default none).
    """
    require(user, "operate")
    ref = f"{version.model_name}:{version.version}"
    if not result.passed:
        audit.record(session, user.name, "model.gate.failed", "model", ref,
                     {"alias": alias, "gate": result.to_dict()})
        failed = [c["check"] for c in result.checks if not c["passed"]]
        # The audit event must survive the failure the caller is about to raise.
        session.commit()
        raise CheckFailed(f"{ref} failed the promotion gate: {', '.join(failed)}")
    pending = session.exec(
        select(Approval).where(
            Approval.version_id == version.id, Approval.target_alias == alias,
            Approval.status == ApprovalStatus.pending.value,
        )
    ).first()
    if pending:
        raise ConflictError(f"{ref} already has pending approval request #{pending.id}")
    approval = Approval(model_name=version.model_name, version_id=version.id,
                        target_alias=alias, gate={**result.to_dict(), **(evidence or {})},
                        requested_by=user.name)
    session.add(approval)
    session.flush()
    audit.record(session, user.name, "model.gate.passed", "model", ref,
                 {"alias": alias, "gate": result.to_dict()})
    audit.record(session, user.name, "model.promotion.requested", "approval", approval.id,
                 {"model": version.model_name, "version": version.version, "alias": alias,
                  "evidence": sorted(evidence or {})})
    return approval


def get_approval(session: Session, approval_id: int) -> Approval:
    approval = session.get(Approval, approval_id)
    if approval is None:
        raise NotFound(f"no approval request #{approval_id}")
    return approval


def _decide(
    session: Session, user: User, approval_id: int, status: ApprovalStatus, comment: str | None
) -> Approval:
    require(user, "approve")
    approval = get_approval(session, approval_id)
    if approval.status != ApprovalStatus.pending.value:
        raise ConflictError(f"approval request #{approval_id} is already {approval.status}")
    if approval.requested_by == user.name:
        raise PermissionDenied(
            f"user {user.name!r} requested #{approval_id} and may not decide it (four-eyes rule)"
        )
    approval.status = status.value
    approval.decided_by = user.name
    approval.decided_at = utcnow()
    approval.comment = comment
    session.add(approval)
    return approval


def approve(session: Session, user: User, approval_id: int, comment: str | None = None) -> Alias:
    """Approve request `approval_id` and move its alias; return the alias row."""
    approval = _decide(session, user, approval_id, ApprovalStatus.approved, comment)
    version = session.get(ModelVersion, approval.version_id)
    audit.record(session, user.name, "model.promotion.approved", "approval", approval.id,
                 {"model": version.model_name, "version": version.version,
                  "alias": approval.target_alias, "comment": comment})
    return set_alias(session, user.name, version, approval.target_alias, approval.id)


def policy_principal(model: str) -> str:
    """The name a model's policy acts under when it approves on its own."""
    return f"policy:{model}"


def approve_by_policy(
    session: Session, approval_id: int, policy: dict[str, Any], risk_tier: str
) -> Alias:
    """Approve request `approval_id` with the model's policy as the approver of record.

    Only a model whose risk tier is "low" may be promoted without a person: the audit names
    the policy and the settings it approved under.

    Raises:
        PermissionDenied: the model's risk tier is not "low", or its policy does not allow it.
    """
    approval = get_approval(session, approval_id)
    if risk_tier != "low" or not policy.get("auto_promote"):
        raise PermissionDenied(
            f"model {approval.model_name!r} (risk tier {risk_tier!r}) may not be promoted by "
            "its policy; an approver must decide"
        )
    if approval.status != ApprovalStatus.pending.value:
        raise ConflictError(f"approval request #{approval_id} is already {approval.status}")
    principal = policy_principal(approval.model_name)
    approval.status = ApprovalStatus.approved.value
    approval.decided_by, approval.decided_at = principal, utcnow()
    approval.comment = "approved by the model's policy (auto_promote, risk tier low)"
    session.add(approval)
    version = session.get(ModelVersion, approval.version_id)
    audit.record(session, principal, "model.promotion.approved", "approval", approval.id,
                 {"model": version.model_name, "version": version.version,
                  "alias": approval.target_alias, "policy": policy, "risk_tier": risk_tier})
    return set_alias(session, principal, version, approval.target_alias, approval.id)


def reject(session: Session, user: User, approval_id: int, comment: str | None = None) -> Approval:
    """Reject request `approval_id`; the alias stays where it is."""
    approval = _decide(session, user, approval_id, ApprovalStatus.rejected, comment)
    audit.record(session, user.name, "model.promotion.rejected", "approval", approval.id,
                 {"comment": comment})
    return approval


def set_alias(
    session: Session, actor: str, version: ModelVersion, alias: str, approval_id: int | None
) -> Alias:
    """Point `alias` of the version's model at `version` (audited)."""
    row = session.exec(
        select(Alias).where(Alias.model_name == version.model_name, Alias.alias == alias)
    ).first()
    previous = None
    if row is None:
        row = Alias(model_name=version.model_name, alias=alias, version_id=version.id,
                    approval_id=approval_id)
    else:
        previous = row.version_id
        row.version_id = version.id
        row.approval_id = approval_id
        row.updated_at = utcnow()
    session.add(row)
    session.flush()
    prev_version = session.get(ModelVersion, previous).version if previous else None
    audit.record(session, actor, "model.alias.moved", "model", version.model_name,
                 {"alias": alias, "from": prev_version, "to": version.version,
                  "approval": approval_id})
    return row
