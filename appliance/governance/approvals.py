"""The promotion gate and four-eyes approval.

A candidate first passes an automated gate: the checks its version stored from its training spec
(`gate_checks`: metric thresholds, no worse than the current holder of the alias beyond a
tolerance on the same evaluation data, per-segment limits, user test functions). Passing opens
an approval request; users with the approver role other than the requester approve it, and only
then does the alias move. Every step is an audit event.

What keeps four eyes from being raced or gone around:

- A request is bound to the incumbent its gate measured against (and stores the gate's
  results); once the alias holder changed, approving it is refused (status "stale") and a new
  request, so a new gate, is needed.
- Deciding locks the request's row (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite's
  IMMEDIATE transactions serialise writers), so two approvers never both decide it.
- A request expires (`DEFAULT_TTL` unless the caller says otherwise); an expired one cannot be
  decided and lists as "expired".
- The model's risk tier sets how many distinct approvers it needs (`REQUIRED_APPROVERS`); the
  requester never counts and one rejection rejects.
- A refused vote of the requester (or through a token the requester issued) is audited as
  ``model.promotion.self_approval_refused`` before the refusal is raised.
- A vote made with a token that the requester issued is refused: an admin who minted a token
  for someone else could otherwise approve their own request under that name. For the same
  reason two votes only count as two approvers when neither voter issued the other's token.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlmodel import Session, SQLModel, col, select

from appliance.errors import ConflictError, GateFailed, InvalidInput, NotFound, PermissionDenied
from appliance.governance import audit, gate_checks
from appliance.governance.gate_checks import (
    FunctionOutcome,
    GateChecks,
    GateResult,
    SegmentMeasure,
    describe_failures,
)
from appliance.governance.operations import operation
from appliance.governance.users import require
from appliance.store.models import (
    Alias,
    ApiToken,
    Approval,
    ApprovalStatus,
    ApprovalVote,
    ModelVersion,
    RegisteredModel,
    RiskTier,
    User,
    utcnow,
)

DEFAULT_TTL = dt.timedelta(days=7)  # how long a request waits for its approvers
# Distinct approvers a promotion needs, by the model's risk tier: the one place this is said.
REQUIRED_APPROVERS: dict[str, int] = {
    RiskTier.low.value: 1,
    RiskTier.medium.value: 1,
    RiskTier.high.value: 2,
}
# Marks "the alias holder now" as the incumbent a request is bound to.
_CURRENT_HOLDER: Any = object()


def gate(
    candidate: dict[str, Any],
    incumbent: dict[str, Any] | None = None,
    *,
    checks: GateChecks | None = None,
    segments: list[SegmentMeasure] | None = None,
    functions: list[FunctionOutcome] | None = None,
) -> GateResult:
    """Judge a candidate's measurements against `checks`; it passes when every check does.

    Args:
        candidate: the candidate's metrics on the evaluation data.
        incumbent: the current alias holder's metrics on the same data, or None (default) if
            the alias is empty.
        checks: the checks (default `gate_checks.DEFAULT_CHECKS`, a binary classifier's:
            floors of 0.7 on accuracy and AUC, and no more than 0.01 below the incumbent on
            either; `gate_checks.default_checks(task)` for another task's).
        segments: the candidate's metrics per segment, for segment checks (default none).
        functions: the user test functions' outcomes (default none).
    """
    results = gate_checks.judge(checks or gate_checks.DEFAULT_CHECKS, candidate, incumbent,
                                segments, functions)
    return GateResult(passed=all(c.passed for c in results), checks=results)


def required_approvers(risk_tier: str) -> int:
    """Distinct approvers a model of `risk_tier` needs (`REQUIRED_APPROVERS`).

    Raises:
        InvalidInput: an unknown tier.
    """
    try:
        return REQUIRED_APPROVERS[risk_tier]
    except KeyError:
        raise InvalidInput(f"unknown risk tier {risk_tier!r}; use "
                           f"{', '.join(REQUIRED_APPROVERS)}") from None


def alias_holder(session: Session, model: str, alias: str) -> ModelVersion | None:
    """The version holding `alias` of `model`, or None while the alias is empty."""
    row = session.exec(
        select(Alias).where(Alias.model_name == model, Alias.alias == alias)
    ).first()
    return session.get(ModelVersion, row.version_id) if row else None


def _label(session: Session, version_id: int | None) -> str:
    if version_id is None:
        return "no holder"
    mv = session.get(ModelVersion, version_id)
    return f"{mv.model_name}:{mv.version}" if mv else f"version id {version_id}"


@operation("promotion.request")
def request_promotion(
    session: Session, user: User, version: ModelVersion, alias: str, result: GateResult,
    evidence: dict[str, Any] | None = None, *, incumbent: ModelVersion | None = _CURRENT_HOLDER,
    expires_at: dt.datetime | None = None, now: dt.datetime | None = None,
) -> Approval:
    """Record a gated promotion request by `user`; CheckFailed if the gate said no.

    Args:
        session: an open session; the caller commits.
        user: the requester (needs "operate"); may not approve it later.
        version: the candidate.
        alias: the alias it would take, e.g. "champion".
        result: the gate's verdict on the candidate.
        evidence: more results the approver should see, e.g. {"canary": {...}} (default none).
        incumbent: the version the gate measured the candidate against, None for an empty
            alias (default: the alias holder now). The request is bound to it.
        expires_at: when the request lapses undecided, timezone-aware (default: `now` plus
            `DEFAULT_TTL`).
        now: the current time (default `utcnow()`).

    Raises:
        PermissionDenied: `user` may not operate.
        GateFailed: the gate failed (audited, and committed before raising); it carries
            `result` as its `verdict`.
        ConflictError: a live request for the same move exists, or the alias moved away from
            `incumbent` while the gate ran.
        InvalidInput: `expires_at` is naive or not in the future.
    """
    require(user, "operate")
    now = now or utcnow()
    ref = f"{version.model_name}:{version.version}"
    if not result.passed:
        audit.record(session, user.name, "model.gate.failed", "model", ref,
                     {"alias": alias, "gate": result.to_dict()})
        # The audit event must survive the failure the caller is about to raise.
        session.commit()
        raise GateFailed(f"{ref} failed the promotion gate: {describe_failures(result)}",
                         result)
    if expires_at is None:
        expires_at = now + DEFAULT_TTL
    elif expires_at.tzinfo is None or expires_at <= now:
        raise InvalidInput(f"a request's expiry must be a future, timezone-aware time, got "
                           f"{expires_at}")
    holder = alias_holder(session, version.model_name, alias)
    holder_id = holder.id if holder else None
    if incumbent is not _CURRENT_HOLDER and (incumbent.id if incumbent else None) != holder_id:
        raise ConflictError(
            f"the {alias!r} alias of {version.model_name!r} moved while the gate ran: it was "
            f"measured against {_label(session, incumbent.id if incumbent else None)}, the "
            f"alias is now held by {_label(session, holder_id)}; run the gate again"
        )
    pending = session.exec(
        select(Approval).where(
            Approval.version_id == version.id, Approval.target_alias == alias,
            Approval.status == ApprovalStatus.pending.value,
        )
    ).first()
    if pending and _lapse(session, pending, now, actor=user.name) is None:
        raise ConflictError(f"{ref} already has pending approval request #{pending.id}")
    model = session.get(RegisteredModel, version.model_name)
    approval = Approval(model_name=version.model_name, version_id=version.id,
                        target_alias=alias, gate={**result.to_dict(), **(evidence or {})},
                        incumbent_version_id=holder_id,
                        required_approvals=required_approvers(model.risk_tier),
                        requested_by=user.name, requested_at=now, expires_at=expires_at)
    session.add(approval)
    session.flush()
    audit.record(session, user.name, "model.gate.passed", "model", ref,
                 {"alias": alias, "gate": result.to_dict(),
                  "incumbent": holder.version if holder else None})
    audit.record(session, user.name, "model.promotion.requested", "approval", approval.id,
                 {"model": version.model_name, "version": version.version, "alias": alias,
                  "incumbent": holder.version if holder else None,
                  "required_approvals": approval.required_approvals,
                  "expires_at": expires_at.isoformat(), "evidence": sorted(evidence or {})})
    return approval


def get_approval(session: Session, approval_id: int) -> Approval:
    approval = session.get(Approval, approval_id)
    if approval is None:
        raise NotFound(f"no approval request #{approval_id}")
    return approval


def _locked(session: Session, approval_id: int) -> Approval:
    """Request `approval_id`, its row locked until the transaction ends.

    FOR UPDATE makes a second decider on PostgreSQL wait, then read the first one's outcome
    (populate_existing: not a copy this session loaded before); SQLite ignores the clause, its
    IMMEDIATE transactions already serialise writers.
    """
    approval = session.exec(
        select(Approval).where(Approval.id == approval_id).with_for_update()
        .execution_options(populate_existing=True)
    ).first()
    if approval is None:
        raise NotFound(f"no approval request #{approval_id}")
    return approval


def effective_status(approval: Approval, now: dt.datetime | None = None) -> str:
    """The request's status as it stands at `now`: a pending request past its expiry is
    "expired" even before anything recorded it (default `now`: `utcnow()`)."""
    if (approval.status == ApprovalStatus.pending.value and approval.expires_at is not None
            and approval.expires_at <= (now or utcnow())):
        return ApprovalStatus.expired.value
    return approval.status


def _lapse(session: Session, approval: Approval, now: dt.datetime, *, actor: str) -> str | None:
    """Close a pending request that can no longer be decided (expired, or its alias moved away
    from the incumbent it was gated against), audited; return why, or None if it stands."""
    holder = alias_holder(session, approval.model_name, approval.target_alias)
    holder_id = holder.id if holder else None
    if effective_status(approval, now) == ApprovalStatus.expired.value:
        approval.status = ApprovalStatus.expired.value
        reason = (f"approval request #{approval.id} expired at "
                  f"{approval.expires_at.isoformat()}; request the promotion again")
    elif holder_id != approval.incumbent_version_id:
        approval.status = ApprovalStatus.stale.value
        reason = (
            f"approval request #{approval.id} was gated against "
            f"{_label(session, approval.incumbent_version_id)}, but the "
            f"{approval.target_alias!r} alias is now held by {_label(session, holder_id)}; "
            f"re-gate with a new request (`appliance promote {approval.model_name} "
            f"{session.get(ModelVersion, approval.version_id).version}`)"
        )
    else:
        return None
    approval.decided_at = now
    session.add(approval)
    audit.record(session, actor, f"model.promotion.{approval.status}", "approval", approval.id,
                 {"model": approval.model_name, "alias": approval.target_alias,
                  "incumbent": approval.incumbent_version_id, "holder": holder_id,
                  "expires_at": approval.expires_at.isoformat() if approval.expires_at
                  else None})
    return reason


def _votes(session: Session, approval_id: int) -> list[ApprovalVote]:
    return list(session.exec(select(ApprovalVote).where(ApprovalVote.approval_id == approval_id)
                             .order_by(col(ApprovalVote.id))).all())


def _token_issuer(user: User, token: ApiToken | None) -> str | None:
    """Who else may be behind `user`'s action: the issuer of the token it came with."""
    if token is None:
        return None
    if token.user_id != user.id:
        raise PermissionDenied(f"the token {token.name!r} does not belong to {user.name!r}")
    return token.issued_by if token.issued_by and token.issued_by != user.name else None


def _check_voter(session: Session, approval: Approval, user: User, issuer: str | None) -> None:
    """Refuse a vote that is not a new, independent pair of eyes (see the module docstring)."""
    if approval.requested_by == user.name:
        raise PermissionDenied(f"user {user.name!r} requested #{approval.id} and may not "
                               "decide it (four-eyes rule)")
    if approval.requested_by == issuer:
        raise PermissionDenied(
            f"the token {user.name!r} acts with was issued by {issuer!r}, who requested "
            f"#{approval.id}; nobody may decide their own request through a token they issued "
            "for someone else (four-eyes rule)"
        )
    for vote in _votes(session, approval.id):
        if vote.voter == user.name:
            raise ConflictError(f"user {user.name!r} already voted on approval request "
                                f"#{approval.id}; another approver must decide")
        if issuer == vote.voter or vote.token_issuer == user.name:
            raise PermissionDenied(
                f"approval request #{approval.id}: {vote.voter!r} voted already and one of "
                f"you issued the other's token, so the two votes may be one person's; "
                "another approver must decide"
            )


def _decide(
    session: Session, user: User, approval_id: int, decision: ApprovalStatus,
    comment: str | None, token: ApiToken | None, now: dt.datetime | None,
) -> tuple[Approval, ApprovalVote, int]:
    """Lock the request, check it can still be decided and that `user` is a new approver,
    and record the vote; return the request, the vote and the approvers it needs."""
    require(user, "approve")
    now = now or utcnow()
    issuer = _token_issuer(user, token)
    approval = _locked(session, approval_id)
    if approval.status != ApprovalStatus.pending.value:
        raise ConflictError(f"approval request #{approval_id} is already {approval.status}")
    try:
        _check_voter(session, approval, user, issuer)
    except PermissionDenied as refused:
        # A self-approval attempt is a fact auditors ask about: record it, and keep the
        # record through the refusal the caller is about to see.
        audit.record(session, user.name, "model.promotion.self_approval_refused", "approval",
                     approval.id, {"model": approval.model_name, "alias": approval.target_alias,
                                   "decision": decision.value, "requested_by":
                                   approval.requested_by, "token_issuer": issuer,
                                   "reason": str(refused)})
        session.commit()
        raise
    reason = _lapse(session, approval, now, actor=user.name)
    if reason is not None:
        # The closing and its audit event must survive the refusal the caller sees.
        session.commit()
        raise ConflictError(reason)
    vote = ApprovalVote(approval_id=approval.id, voter=user.name, decision=decision.value,
                        token_issuer=issuer, comment=comment, decided_at=now)
    session.add(vote)
    session.flush()
    # A tier raised since the request counts; a lowered one does not lower the bar.
    tier = session.get(RegisteredModel, approval.model_name).risk_tier
    needed = max(approval.required_approvals, required_approvers(tier))
    return approval, vote, needed


def _close(approval: Approval, status: ApprovalStatus, user: str, comment: str | None,
           now: dt.datetime) -> None:
    approval.status = status.value
    approval.decided_by = user
    approval.decided_at = now
    approval.comment = comment


@operation("approve")
def approve(
    session: Session, user: User, approval_id: int, comment: str | None = None, *,
    token: ApiToken | None = None, now: dt.datetime | None = None,
) -> Approval:
    """Approve request `approval_id` as `user`; once enough distinct approvers did, move its
    alias. Return the request ("pending" while it waits for more approvers).

    Args:
        session: an open session; the caller commits.
        user: the approver (needs "approve"; not the requester, nor someone whose token the
            requester issued).
        approval_id: the request.
        comment: why (default none).
        token: the API token `user` acts with, so its issuer is checked too (default None: an
            in-process caller that vouches for `user` itself).
        now: the current time (default `utcnow()`).

    Raises:
        NotFound: no such request.
        PermissionDenied: not an approver, or not an independent one (four-eyes rule).
        ConflictError: the request is decided already, expired, or its alias moved since the
            gate (then it is closed as "stale", audited, and a new request is needed).
    """
    approval, vote, needed = _decide(session, user, approval_id, ApprovalStatus.approved,
                                     comment, token, now)
    now = vote.decided_at
    approvers = [v.voter for v in _votes(session, approval.id)
                 if v.decision == ApprovalStatus.approved.value]
    version = session.get(ModelVersion, approval.version_id)
    details = {"model": version.model_name, "version": version.version,
               "alias": approval.target_alias, "comment": comment, "approvers": approvers,
               "required": needed, "token_issuer": vote.token_issuer}
    if len(approvers) < needed:
        audit.record(session, user.name, "model.promotion.endorsed", "approval", approval.id,
                     details)
        session.add(approval)
        return approval
    _close(approval, ApprovalStatus.approved, user.name, comment, now)
    session.add(approval)
    audit.record(session, user.name, "model.promotion.approved", "approval", approval.id,
                 details)
    set_alias(session, user.name, version, approval.target_alias, approval.id)
    return approval


def policy_principal(model: str) -> str:
    """The name a model's policy acts under when it approves on its own."""
    return f"policy:{model}"


def approve_by_policy(
    session: Session, approval_id: int, policy: dict[str, Any], risk_tier: str,
    now: dt.datetime | None = None,
) -> Alias:
    """Approve request `approval_id` with the model's policy as the approver of record.

    Only a model whose risk tier is "low" may be promoted without a person: the audit names
    the policy and the settings it approved under.

    Raises:
        PermissionDenied: the model's risk tier is not "low", or its policy does not allow it.
        ConflictError: the request is decided, expired or stale (as `approve`).
    """
    now = now or utcnow()
    approval = _locked(session, approval_id)
    if risk_tier != "low" or not policy.get("auto_promote"):
        raise PermissionDenied(
            f"model {approval.model_name!r} (risk tier {risk_tier!r}) may not be promoted by "
            "its policy; an approver must decide"
        )
    if approval.status != ApprovalStatus.pending.value:
        raise ConflictError(f"approval request #{approval_id} is already {approval.status}")
    principal = policy_principal(approval.model_name)
    reason = _lapse(session, approval, now, actor=principal)
    if reason is not None:
        session.commit()
        raise ConflictError(reason)
    comment = "approved by the model's policy (auto_promote, risk tier low)"
    session.add(ApprovalVote(approval_id=approval.id, voter=principal,
                             decision=ApprovalStatus.approved.value, comment=comment,
                             decided_at=now))
    _close(approval, ApprovalStatus.approved, principal, comment, now)
    session.add(approval)
    version = session.get(ModelVersion, approval.version_id)
    audit.record(session, principal, "model.promotion.approved", "approval", approval.id,
                 {"model": version.model_name, "version": version.version,
                  "alias": approval.target_alias, "policy": policy, "risk_tier": risk_tier})
    return set_alias(session, principal, version, approval.target_alias, approval.id)


@operation("reject")
def reject(
    session: Session, user: User, approval_id: int, comment: str | None = None, *,
    token: ApiToken | None = None, now: dt.datetime | None = None,
) -> Approval:
    """Reject request `approval_id`; the alias stays where it is. One rejection rejects,
    whatever approvals it had. Args and Raises as `approve`."""
    approval, vote, _ = _decide(session, user, approval_id, ApprovalStatus.rejected, comment,
                                token, now)
    _close(approval, ApprovalStatus.rejected, user.name, comment, vote.decided_at)
    session.add(approval)
    audit.record(session, user.name, "model.promotion.rejected", "approval", approval.id,
                 {"comment": comment, "token_issuer": vote.token_issuer})
    return approval


class ApprovalPublic(SQLModel):
    """A promotion request as `appliance approvals` shows it."""

    id: int
    model: str
    version: int
    alias: str
    status: str
    incumbent_version: int | None
    required_approvals: int
    approved_by: list[str]
    requested_by: str
    decided_by: str | None
    requested_at: dt.datetime
    expires_at: dt.datetime | None


class PromotionRequestPublic(SQLModel):
    """What requesting a promotion produced: the gate's verdict, and the approval request it
    opened (`approval` None and status "gate_failed" when the gate said no)."""

    approval: int | None
    model: str
    version: int
    alias: str
    status: str
    incumbent_version: int | None
    required_approvals: int | None
    gate: GateResult


def promotion_report(session: Session, approval: Approval, result: GateResult
                     ) -> PromotionRequestPublic:
    """The request `approval` that `result` opened, as `appliance promote` shows it."""
    public = to_public(session, approval)
    return PromotionRequestPublic(
        approval=public.id, model=public.model, version=public.version, alias=public.alias,
        status=public.status, incumbent_version=public.incumbent_version,
        required_approvals=public.required_approvals, gate=result)


def gate_failure_report(model: str, version: int, alias: str, result: GateResult
                        ) -> PromotionRequestPublic:
    """A promotion the gate refused, as `appliance promote` shows it: no request opened."""
    return PromotionRequestPublic(approval=None, model=model, version=version, alias=alias,
                                  status="gate_failed", incumbent_version=None,
                                  required_approvals=None, gate=result)


def to_public(session: Session, approval: Approval, now: dt.datetime | None = None
              ) -> ApprovalPublic:
    """`approval` as shown to people, its status as of `now` (see `effective_status`)."""
    incumbent = (session.get(ModelVersion, approval.incumbent_version_id)
                 if approval.incumbent_version_id else None)
    return ApprovalPublic(
        id=approval.id, model=approval.model_name,
        version=session.get(ModelVersion, approval.version_id).version,
        alias=approval.target_alias, status=effective_status(approval, now),
        incumbent_version=incumbent.version if incumbent else None,
        required_approvals=approval.required_approvals,
        approved_by=[v.voter for v in _votes(session, approval.id)
                     if v.decision == ApprovalStatus.approved.value],
        requested_by=approval.requested_by, decided_by=approval.decided_by,
        requested_at=approval.requested_at, expires_at=approval.expires_at,
    )


def list_approvals(session: Session, status: str = "pending", now: dt.datetime | None = None
                   ) -> list[ApprovalPublic]:
    """Requests whose status (as of `now`, expiry applied) is `status`, or all for "all".

    Raises:
        InvalidInput: an unknown status.
    """
    known = {s.value for s in ApprovalStatus}
    if status != "all" and status not in known:
        raise InvalidInput(f"unknown approval status {status!r}; use all or "
                           f"{', '.join(sorted(known))}")
    rows = session.exec(select(Approval).order_by(col(Approval.id))).all()
    docs = [to_public(session, a, now) for a in rows]
    return [d for d in docs if status == "all" or d.status == status]


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
