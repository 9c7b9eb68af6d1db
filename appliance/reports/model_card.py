"""A model card's facts, gathered from the store: who owns the model and how it is governed,
where each version came from, how it was judged and approved, what served when, and how it
has done in production since.

`build_model_card` returns a typed `ModelCardPublic` (also what ``--format json`` would
emit); `card_sections` turns it into a `Document` for HTML or Markdown.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlmodel import Session, SQLModel, col, select

from appliance.errors import NotFound
from appliance.governance import approvals, reviews
from appliance.governance.gate_checks import GateCheckResult, GateResult
from appliance.governance.reviews import ReviewPublic, ReviewStatusPublic
from appliance.monitor import importance
from appliance.monitor.alerts import AlertPublic
from appliance.monitor.alerts import to_public as alert_public
from appliance.monitor.fairness import FOUR_FIFTHS
from appliance.registry import models as registry
from appliance.registry.contract import ContractReport
from appliance.registry.datasets import report as contract_report
from appliance.store.models import (
    Alert,
    Approval,
    ApprovalVote,
    AuditEvent,
    Dataset,
    Deployment,
    DriftReport,
    ModelVersion,
    PredictionWindow,
    Run,
    WindowVersion,
    utcnow,
)

# The drift statistic the per-feature map shows, first one a report has.
DRIFT_STATISTICS = ("psi", "jensen_shannon", "hellinger", "tvd")


class ModelFactsPublic(SQLModel):
    """Who owns the model and how it is governed."""

    name: str
    description: str
    owner: str
    team: str
    runbook_url: str | None
    risk_tier: str
    required_approvers: int
    created_at: dt.datetime
    review: ReviewStatusPublic


class DatasetFactsPublic(SQLModel):
    """A dataset version a model version was trained on, and its data contract."""

    name: str
    version: int
    digest: str
    rows: int
    columns: int
    source: str | None
    label: str | None
    contract_status: str
    contract: ContractReport | None
    contract_accepted_by: str | None
    contract_accepted_reason: str | None
    lineage: dict[str, Any] | None
    created_by: str
    created_at: dt.datetime


class RunFactsPublic(SQLModel):
    """The training run behind a version."""

    id: str
    kind: str
    status: str
    params: dict[str, Any]
    seed: int
    code_version: str
    environment: str
    device: str | None
    tuning_run: str | None
    created_by: str
    started_at: dt.datetime
    finished_at: dt.datetime | None


class VersionFactsPublic(SQLModel):
    """One registered version and its lineage."""

    version: int
    aliases: list[str]
    digest: str
    metrics: dict[str, float]
    dataset: str
    run: str
    created_by: str
    created_at: dt.datetime


class SegmentMetricPublic(SQLModel):
    """A metric of the version on one segment, as its promotion gate measured it."""

    check: str
    measured: float | None
    limit: float | None
    passed: bool
    judged: bool


class ApprovalHistoryPublic(SQLModel):
    """One promotion request of the model: its gate, votes and outcome."""

    id: int
    version: int
    alias: str
    status: str
    requested_by: str
    requested_at: dt.datetime
    required_approvals: int
    approved_by: list[str]
    rejected_by: list[str]
    decided_at: dt.datetime | None
    gate_passed: bool
    gate_checks: list[GateCheckResult]


class GateEventPublic(SQLModel):
    """A gate run from the audit log (passed ones opened a request; failed ones did not)."""

    ts: dt.datetime
    actor: str
    version: str
    alias: str | None
    passed: bool
    failed_checks: list[str]


class DeploymentFactsPublic(SQLModel):
    """One period of the deployment ledger: what served, in which role, when."""

    name: str
    version: int
    role: str
    mode: str | None
    share: float | None
    status: str
    created_by: str
    started_at: dt.datetime
    stopped_at: dt.datetime | None


class WindowPointPublic(SQLModel):
    """One closed window as served by one version: live and estimated accuracy, drift."""

    deployment: str
    window: int
    closed_at: dt.datetime
    version: int
    rows: int
    labelled_rows: int
    accuracy: float | None
    estimated_accuracy: float | None
    drift_status: str
    drifted_share: float | None
    drift_statistic: str | None
    feature_drift: dict[str, float | None]
    drifted_features: list[str]
    # The window's fairness gaps on the protected attribute (`appliance.monitor.fairness`) and
    # importance shift (`appliance.monitor.importance`); None when not configured or measured.
    fairness: dict[str, Any] | None = None
    importance_shift: float | None = None
    # Per configured segment column, per value: rows, positive rate, mean score and the live
    # metrics of its labelled rows (`appliance.monitor.fairness.segment_stats`).
    segments: dict[str, Any] | None = None


class FeatureImportancePublic(SQLModel):
    """How much one feature matters to the version (e.g. permutation importance)."""

    feature: str
    importance: float
    method: str


class FairnessMetricPublic(SQLModel):
    """A fairness measure on a protected attribute, and whether it is within its limit."""

    attribute: str
    metric: str
    value: float | None
    limit: float | None
    passed: bool | None
    window: int | None = None


class ModelCardPublic(SQLModel):
    """Everything a model card says, as typed facts."""

    model: ModelFactsPublic
    version: int
    aliases: list[str]
    metrics: dict[str, float]
    dataset: DatasetFactsPublic
    run: RunFactsPublic
    versions: list[VersionFactsPublic]
    segments: list[SegmentMetricPublic]
    approvals: list[ApprovalHistoryPublic]
    gate_runs: list[GateEventPublic]
    deployments: list[DeploymentFactsPublic]
    windows: list[WindowPointPublic]
    alerts: list[AlertPublic]
    reviews: list[ReviewPublic]
    # None: not recorded in the store for this version (the card says so).
    importance: list[FeatureImportancePublic] | None = None
    fairness: list[FairnessMetricPublic] | None = None
    generated_at: dt.datetime


def _numbers(metrics: dict[str, Any] | None) -> dict[str, float]:
    return {k: float(v) for k, v in (metrics or {}).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _dataset(ds: Dataset) -> DatasetFactsPublic:
    return DatasetFactsPublic(
        name=ds.name, version=ds.version, digest=ds.digest, rows=ds.rows,
        columns=len(ds.columns or []), source=ds.source, label=ds.label,
        contract_status=ds.contract_status, contract=contract_report(ds),
        contract_accepted_by=ds.contract_accepted_by,
        contract_accepted_reason=ds.contract_accepted_reason, lineage=ds.lineage or None,
        created_by=ds.created_by, created_at=ds.created_at)


def _run(run: Run) -> RunFactsPublic:
    return RunFactsPublic(
        id=run.id, kind=run.kind, status=run.status, params=run.params or {}, seed=run.seed,
        code_version=run.code_version, environment=run.environment, device=run.device,
        tuning_run=run.parent_run_id, created_by=run.created_by, started_at=run.started_at,
        finished_at=run.finished_at)


def _approval(session: Session, approval: Approval, versions: dict[int, int]
              ) -> ApprovalHistoryPublic:
    votes = session.exec(select(ApprovalVote).where(ApprovalVote.approval_id == approval.id)
                         .order_by(col(ApprovalVote.id))).all()
    verdict = GateResult.from_dict(approval.gate) if approval.gate.get("checks") is not None \
        else GateResult(passed=True, checks=[])
    return ApprovalHistoryPublic(
        id=approval.id, version=versions.get(approval.version_id, 0),
        alias=approval.target_alias, status=approvals.effective_status(approval),
        requested_by=approval.requested_by, requested_at=approval.requested_at,
        required_approvals=approval.required_approvals,
        approved_by=[v.voter for v in votes if v.decision == "approved"],
        rejected_by=[v.voter for v in votes if v.decision == "rejected"],
        decided_at=approval.decided_at, gate_passed=verdict.passed,
        gate_checks=verdict.checks)


def _gate_runs(session: Session, model: str) -> list[GateEventPublic]:
    events = session.exec(select(AuditEvent).where(
        col(AuditEvent.action).in_(("model.gate.passed", "model.gate.failed")),
        AuditEvent.object_type == "model",
        col(AuditEvent.object_id).startswith(f"{model}:"),
    ).order_by(col(AuditEvent.id))).all()
    out = []
    for e in events:
        checks = (e.details or {}).get("gate", {}).get("checks", [])
        out.append(GateEventPublic(
            ts=e.ts, actor=e.actor, version=e.object_id.split(":", 1)[1],
            alias=(e.details or {}).get("alias"), passed=e.action == "model.gate.passed",
            failed_checks=[c.get("name", "?") for c in checks if not c.get("passed", True)]))
    return out


def _feature_drift(report: dict[str, Any] | None) -> tuple[str | None, dict[str, float | None]]:
    features = (report or {}).get("features") or {}
    for stat in DRIFT_STATISTICS:
        if any(isinstance(f, dict) and stat in f for f in features.values()):
            return stat, {name: (f.get(stat) or {}).get("value") if isinstance(f, dict) else None
                          for name, f in features.items()}
    return None, {}


def _windows(session: Session, version_ids: dict[int, int]) -> list[WindowPointPublic]:
    if not version_ids:
        return []
    rows = session.exec(
        select(WindowVersion, PredictionWindow)
        .where(col(WindowVersion.version_id).in_(list(version_ids)),
               WindowVersion.shadow == False,  # noqa: E712 - SQL comparison
               WindowVersion.window_id == PredictionWindow.id)
        .order_by(col(PredictionWindow.closed_at), col(PredictionWindow.index))
    ).all()
    out = []
    for stats, window in rows:
        drift = session.exec(select(DriftReport).where(
            DriftReport.window_id == window.id, DriftReport.version_id == stats.version_id,
            DriftReport.shadow == False,  # noqa: E712 - SQL comparison
        )).first()
        statistic, per_feature = _feature_drift(drift.report if drift else None)
        out.append(WindowPointPublic(
            deployment=window.deployment, window=window.index, closed_at=window.closed_at,
            version=stats.version, rows=stats.rows, labelled_rows=stats.labelled_rows,
            accuracy=_numbers(stats.metrics).get("accuracy") if stats.labelled_rows else None,
            estimated_accuracy=_numbers(stats.estimated).get("accuracy"),
            drift_status=stats.drift_status, drifted_share=stats.drifted_share,
            drift_statistic=statistic, feature_drift=per_feature,
            drifted_features=list(drift.drifted_features or []) if drift else [],
            fairness=stats.fairness, segments=stats.segments,
            importance_shift=_numbers(stats.importance).get("importance_shift")))
    return out


def _importance(version: ModelVersion) -> list[FeatureImportancePublic] | None:
    """The version's permutation importance on its holdout, measured when it was trained
    (`appliance.monitor.importance`), most important first; None for a version trained
    before importance was measured."""
    try:
        stored = importance.to_public(version)
    except NotFound:
        return None
    method = f"{stored.method}, {stored.metric}"
    return [FeatureImportancePublic(feature=f.feature, importance=f.importance, method=method)
            for f in stored.features]


# The gaps of a window's fairness record, and the limit each is held to: the four-fifths rule
# for the disparate impact ratio; the differences have no rule of law, so no limit is claimed.
_GAP_LIMITS = {"demographic_parity_difference": None, "disparate_impact_ratio": FOUR_FIFTHS,
               "equal_opportunity_difference": None}


def _fairness(windows: list[WindowPointPublic], version: int
              ) -> list[FairnessMetricPublic] | None:
    """The fairness gaps of the latest window `version` served with fairness measured (the
    whole history is in `windows`, which the card plots); None when no window has them."""
    measured = [w for w in windows if w.version == version and w.fairness
                and "error" not in w.fairness]
    if not measured:
        return None
    latest = measured[-1]
    doc = latest.fairness or {}
    out = []
    for metric, limit in _GAP_LIMITS.items():
        value = doc.get(metric)
        passed = None if value is None or limit is None else bool(value >= limit)
        out.append(FairnessMetricPublic(attribute=str(doc.get("attribute")), metric=metric,
                                        value=value, limit=limit, passed=passed,
                                        window=latest.window))
    return out


def build_model_card(session: Session, model: str, version: int | None = None,
                     now: dt.datetime | None = None) -> ModelCardPublic:
    """The facts of `model`'s card, centred on one version.

    Args:
        session: an open session (read only).
        model: the model's name.
        version: the version the card describes (default: the champion, else the latest).
        now: when the card is generated, for the review status (default now).

    Raises:
        NotFound: no such model, version, or no version at all; InvalidInput: a bad name.
    """
    now = now or utcnow()
    row = registry.get_model(session, model)
    if version is not None:
        mv = registry.resolve(session, f"{row.name}:{version}")
    else:
        try:
            mv = registry.resolve(session, f"{row.name}@champion")
        except NotFound:  # no champion yet: the latest version
            mv = registry.resolve(session, row.name)
    all_versions = session.exec(select(ModelVersion).where(ModelVersion.model_name == row.name)
                                .order_by(col(ModelVersion.version))).all()
    numbers = {v.id: v.version for v in all_versions}
    run = session.get(Run, mv.run_id)
    versions = []
    for v in all_versions:
        vrun = session.get(Run, v.run_id)
        ds = session.get(Dataset, vrun.dataset_id)
        versions.append(VersionFactsPublic(
            version=v.version, aliases=registry.aliases_of(session, v), digest=v.digest,
            metrics=_numbers(v.metrics), dataset=f"{ds.name}:{ds.version}", run=v.run_id,
            created_by=v.created_by, created_at=v.created_at))
    history = [_approval(session, a, numbers) for a in session.exec(
        select(Approval).where(Approval.model_name == row.name).order_by(col(Approval.id)))]
    mine = [a for a in history if a.version == mv.version]
    segments = [SegmentMetricPublic(check=c.name, measured=c.measured, limit=c.limit,
                                    passed=c.passed, judged=c.judged)
                for c in (mine[-1].gate_checks if mine else []) if c.kind == "segment"]
    deployments = [
        DeploymentFactsPublic(name=d.name, version=numbers.get(d.version_id, 0), role=d.role,
                              mode=d.mode, share=d.share, status=d.status,
                              created_by=d.created_by, started_at=d.started_at,
                              stopped_at=d.stopped_at)
        for d in session.exec(select(Deployment).where(Deployment.model_name == row.name)
                              .order_by(col(Deployment.started_at), col(Deployment.id)))]
    windows = _windows(session, numbers)
    alerts = [alert_public(session, a) for a in session.exec(
        select(Alert).where(Alert.model_name == row.name).order_by(col(Alert.id)))]
    return ModelCardPublic(
        model=ModelFactsPublic(
            name=row.name, description=row.description, owner=row.owner, team=row.team,
            runbook_url=row.runbook_url, risk_tier=row.risk_tier,
            required_approvers=approvals.required_approvers(row.risk_tier),
            created_at=row.created_at, review=reviews.review_status(session, row, now)),
        version=mv.version, aliases=registry.aliases_of(session, mv),
        metrics=_numbers(mv.metrics), dataset=_dataset(session.get(Dataset, run.dataset_id)),
        run=_run(run), versions=versions, segments=segments, approvals=history,
        gate_runs=_gate_runs(session, row.name), deployments=deployments,
        windows=windows, alerts=alerts,
        reviews=reviews.history(session, row.name),
        importance=_importance(mv), fairness=_fairness(windows, mv.version),
        generated_at=now)
