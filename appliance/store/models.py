"""The metadata store's tables.

Times are timezone-aware UTC (SQLModel's UTCDateTime refuses naive ones, and hands back UTC
even from SQLite, which keeps no zone); `utcnow()` makes them. JSON columns hold small
documents (params, metrics, gate results); bulk data lives in the artifact store and rows point
to it by sha256 digest.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import JSON, Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

# Used by the tables' defaults, and imported from here by most callers.
from appliance.store.clock import utcnow


class Role(str, enum.Enum):
    viewer = "viewer"
    operator = "operator"
    approver = "approver"
    admin = "admin"


class User(SQLModel, table=True):
    # Not "user": in PostgreSQL an unquoted `user` is the current role, a silent trap in raw SQL.
    __tablename__ = "users"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True)
    role: str = Field(default=Role.viewer.value)
    team: str = Field(default="default")
    email: str | None = None
    created_at: dt.datetime = Field(default_factory=utcnow)
    # Set while the user is disabled: every token of theirs is refused, in the CLI and serving.
    disabled_at: dt.datetime | None = None


class ApiToken(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id", index=True)
    name: str
    # sha256 of the secret: the secret itself is shown once and never stored.
    token_hash: str = Field(unique=True, index=True)
    created_at: dt.datetime = Field(default_factory=utcnow)
    revoked_at: dt.datetime | None = None
    # Serving scopes ("infer", "feedback", "admin"); None: the role's defaults.
    scopes: list[str] | None = Field(default=None, sa_column=Column(JSON))
    expires_at: dt.datetime | None = None
    # Who minted it: an admin can issue a token for someone else, and whoever holds it can act
    # as them, so four-eyes checks look at the issuer too. None: issued before it was recorded.
    issued_by: str | None = None


class TokenSet(SQLModel, table=True):
    """One row whose `version` is bumped with every token change, in the same transaction.

    Serving replicas poll this one number and reload the tokens only when it moved, so a
    revocation reaches them within a poll interval without a query per request.
    """

    id: int = Field(default=1, primary_key=True)
    version: int = 0
    updated_at: dt.datetime = Field(default_factory=utcnow)


class Dataset(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("name", "version"),)
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True)
    version: int
    digest: str = Field(index=True)
    rows: int
    columns: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON))
    source: str | None = None
    # Where the rows came from when the appliance built them (a retraining set): the windows,
    # feedback batches and earlier dataset it drew on, and the retrain request that asked.
    lineage: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    created_by: str
    created_at: dt.datetime = Field(default_factory=utcnow)
    # The data contract (appliance.registry.contract): the label column the profile keeps
    # class shares of, the profile itself (so the next version is checked without re-reading
    # this one's rows), this version's ContractReport against its baseline, and its status;
    # "failed" blocks training until someone accepts it, which is recorded here too.
    label: str | None = None
    profile: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    contract: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    contract_status: str = Field(default="unchecked")
    contract_accepted_by: str | None = None
    contract_accepted_reason: str | None = Field(default=None, sa_column=Column(Text))
    contract_accepted_at: dt.datetime | None = None


class RiskTier(str, enum.Enum):
    """How much review a model's changes need; only `low` may let its policy auto-promote."""

    low = "low"
    medium = "medium"
    high = "high"


class RegisteredModel(SQLModel, table=True):
    name: str = Field(primary_key=True)
    owner: str
    team: str = "default"
    description: str = ""
    # Where the owner's on-call finds what to do when an alert fires; every alert carries it.
    runbook_url: str | None = None
    risk_tier: str = Field(default=RiskTier.medium.value)
    # Days between periodic reviews (appliance.governance.reviews); None: the tier's default.
    review_interval_days: int | None = None
    created_at: dt.datetime = Field(default_factory=utcnow)


class ModelReview(SQLModel, table=True):
    """One periodic review of a model by an approver: the next one is due an interval later."""

    id: int | None = Field(default=None, primary_key=True)
    model_name: str = Field(foreign_key="registeredmodel.name", index=True)
    reviewer: str
    notes: str = Field(sa_column=Column(Text, nullable=False))
    # The champion when reviewed (None: the model had none).
    version: int | None = None
    reviewed_at: dt.datetime = Field(default_factory=utcnow)
    next_due_at: dt.datetime


class Run(SQLModel, table=True):
    id: str = Field(primary_key=True)
    model_name: str = Field(index=True)
    dataset_id: int = Field(foreign_key="dataset.id", index=True)
    spec: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    params: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    seed: int
    code_version: str
    # sha256 over the installed distributions (appliance.registry.provenance.environment_hash).
    environment: str
    # Python, torch, CUDA, GPU driver, OS and hardware the run started with
    # (provenance.Runtime); None for runs recorded before it was kept.
    runtime: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    # The run this one trained again from its record (`appliance runs rerun`).
    rerun_of: str | None = Field(default=None, foreign_key="run.id", index=True)
    status: str = "running"
    metrics: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    device: str | None = None
    error: str | None = Field(default=None, sa_column=Column(Text))
    created_by: str
    started_at: dt.datetime = Field(default_factory=utcnow)
    finished_at: dt.datetime | None = None
    # "train" (one fit), "tune" (a sweep: its trials and the retrained best are its children)
    # or "trial" (one configuration of a sweep, scored on a validation slice of the training
    # part). A trial's status may be "stopped": the scheduler ended it early.
    kind: str = Field(default="train", sa_column_kwargs={"server_default": "train"})
    parent_run_id: str | None = Field(default=None, foreign_key="run.id", index=True)


class ModelVersion(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("model_name", "version"),)
    id: int | None = Field(default=None, primary_key=True)
    model_name: str = Field(foreign_key="registeredmodel.name", index=True)
    version: int
    digest: str = Field(index=True)
    profile_digest: str | None = None
    run_id: str = Field(foreign_key="run.id")
    metrics: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    features: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    categorical: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    label: str
    # How the version's scores map to probabilities, checked on its holdout at training time
    # (appliance.monitor.estimate.Calibration); the label-free estimate relies on it.
    calibration: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    # The promotion gate this version is judged by, from its training spec's [gate]
    # (appliance.governance.gate_checks.GateChecks); null before 0007: the default gate.
    gate_checks: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    # Global feature importance measured on the holdout at training time
    # (appliance.monitor.importance.VersionImportance); null before 0011.
    importance: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    created_by: str
    created_at: dt.datetime = Field(default_factory=utcnow)


class Alias(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("model_name", "alias"),)
    id: int | None = Field(default=None, primary_key=True)
    model_name: str = Field(foreign_key="registeredmodel.name", index=True)
    alias: str
    version_id: int = Field(foreign_key="modelversion.id")
    approval_id: int | None = Field(default=None, foreign_key="approval.id")
    updated_at: dt.datetime = Field(default_factory=utcnow)


class ApprovalStatus(str, enum.Enum):
    pending = "pending"
    approved = "approved"
    rejected = "rejected"
    # Not decided before `expires_at`; a new request (and gate) is needed.
    expired = "expired"
    # The alias moved away from the incumbent the gate measured against; re-gate.
    stale = "stale"


class Approval(SQLModel, table=True):
    """A gated request to move an alias, bound to what the gate compared the candidate with.

    `incumbent_version_id` is the alias holder when the gate ran (None: the alias was empty)
    and `gate` the results; approval is refused once the holder changed. Each approver's vote
    is an `ApprovalVote` row; `decided_by` names the one whose vote decided it.
    """

    id: int | None = Field(default=None, primary_key=True)
    model_name: str = Field(index=True)
    version_id: int = Field(foreign_key="modelversion.id")
    target_alias: str
    status: str = Field(default=ApprovalStatus.pending.value, index=True)
    gate: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    incumbent_version_id: int | None = Field(default=None, foreign_key="modelversion.id")
    # Distinct approvers needed, from the model's risk tier when requested.
    required_approvals: int = 1
    requested_by: str
    requested_at: dt.datetime = Field(default_factory=utcnow)
    # None: never (only requests made before expiry existed).
    expires_at: dt.datetime | None = None
    decided_by: str | None = None
    decided_at: dt.datetime | None = None
    comment: str | None = None


class ApprovalVote(SQLModel, table=True):
    """One approver's decision on one request; unique per voter, so nobody counts twice."""

    __table_args__ = (UniqueConstraint("approval_id", "voter"),)
    id: int | None = Field(default=None, primary_key=True)
    approval_id: int = Field(foreign_key="approval.id", index=True)
    voter: str
    decision: str  # "approved" or "rejected"
    # Who issued the token the vote came with, when not the voter (see ApiToken.issued_by).
    token_issuer: str | None = None
    comment: str | None = None
    decided_at: dt.datetime = Field(default_factory=utcnow)


class Deployment(SQLModel, table=True):
    """One row per (deployment, version, role) period: the ledger of what served when.

    `role` is "primary" (answers by default) or "canary" (a challenger behind the same route,
    taking `share` of requests in "split" mode, or scoring every request unseen in "shadow").
    """

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True)
    model_name: str = Field(index=True)
    version_id: int = Field(foreign_key="modelversion.id")
    url: str
    role: str = "primary"
    mode: str | None = None
    share: float | None = None
    retrain_id: int | None = None
    # The serving options it runs with (`appliance.serving.ServingOptions.to_dict`).
    serving: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    status: str = "active"
    created_by: str
    started_at: dt.datetime = Field(default_factory=utcnow)
    stopped_at: dt.datetime | None = None


class PredictionWindow(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("deployment", "index"),)
    id: int | None = Field(default=None, primary_key=True)
    deployment: str = Field(index=True)
    index: int
    path: str
    # sha256 of the closed window file: it lives outside the content store, so reads check it.
    sha256: str | None = None
    rows: int
    requests: int
    versions: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    first_ts: dt.datetime | None = None
    last_ts: dt.datetime | None = None
    # `rows`, `labelled_rows` and `accuracy` count served rows; a shadow challenger's rows
    # (scored, never answered) are counted apart.
    shadow_rows: int = 0
    labelled_rows: int = 0
    accuracy: float | None = None
    # "rows" or "seconds": which limit of the window policy closed it.
    closed_by: str = "rows"
    closed_at: dt.datetime = Field(default_factory=utcnow)
    labels_updated_at: dt.datetime | None = None


class WindowVersion(SQLModel, table=True):
    """What one model version did in one window: drift against its own profile, live metrics
    from the labels that have arrived so far, and the label-free estimate."""

    __table_args__ = (UniqueConstraint("window_id", "version_id", "shadow"),)
    id: int | None = Field(default=None, primary_key=True)
    window_id: int = Field(foreign_key="predictionwindow.id", index=True)
    version_id: int = Field(foreign_key="modelversion.id", index=True)
    version: int
    shadow: bool = False
    rows: int
    labelled_rows: int = 0
    metrics: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    estimated: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    # "drifted", "ok", "insufficient" (too few rows for a verdict) or "no_profile".
    drift_status: str = "insufficient"
    drifted_share: float | None = None
    # Per segment value of each configured segment column, the fairness gaps on the protected
    # attribute, and the importance shift against the version's own (appliance.monitor.
    # fairness, appliance.monitor.importance); null when not configured or before 0011.
    segments: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    fairness: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    importance: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    updated_at: dt.datetime = Field(default_factory=utcnow)


class RequestIndex(SQLModel, table=True):
    """Which window holds a served request: labels find their rows through it, never by scan."""

    __table_args__ = (
        UniqueConstraint("window_id", "request_id"),
        Index("ix_requestindex_lookup", "deployment", "request_id"),
        Index("ix_requestindex_request_id", "request_id"),
    )
    id: int | None = Field(default=None, primary_key=True)
    deployment: str
    request_id: str
    window_id: int = Field(foreign_key="predictionwindow.id", index=True)


class FeedbackBatch(SQLModel, table=True):
    """One delivered feedback file; `status` says how far its labels reached their windows:
    "new", "partial" (some requests were not in a closed window yet), "applied", "expired"."""

    id: int | None = Field(default=None, primary_key=True)
    deployment: str = Field(index=True)
    path: str = Field(unique=True)
    rows: int
    status: str = Field(default="new", index=True)
    matched_rows: int = 0
    received_at: dt.datetime = Field(default_factory=utcnow)
    applied_at: dt.datetime | None = None


class DriftReport(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    window_id: int = Field(foreign_key="predictionwindow.id", index=True)
    version_id: int = Field(foreign_key="modelversion.id")
    shadow: bool = False
    rows: int = 0
    drifted_share: float
    dataset_drifted: bool
    drifted_features: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    report: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    computed_at: dt.datetime = Field(default_factory=utcnow)


class AlertStatus(str, enum.Enum):
    open = "open"
    acknowledged = "acknowledged"
    resolved = "resolved"


class Alert(SQLModel, table=True):
    """One firing of an alert rule for a deployment, from first breach to resolution.

    While it is open or acknowledged, further breaches of the same rule update it
    (`occurrences`, `last_window_id`) instead of raising a new alert.
    """

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(index=True)
    rule: str = Field(default="", index=True)
    severity: str = "warning"
    status: str = Field(default=AlertStatus.open.value, index=True)
    model_name: str = Field(index=True)
    deployment: str | None = None
    version: int | None = None
    window_id: int | None = Field(default=None, foreign_key="predictionwindow.id")
    last_window_id: int | None = None
    value: float | None = None
    threshold: float | None = None
    occurrences: int = 1
    message: str = Field(sa_column=Column(Text))
    owner: str
    team: str = "default"
    runbook_url: str | None = None
    notified: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    created_at: dt.datetime = Field(default_factory=utcnow)
    last_seen_at: dt.datetime | None = None
    acknowledged_by: str | None = None
    acknowledged_at: dt.datetime | None = None
    resolved_by: str | None = None
    resolved_at: dt.datetime | None = None
    resolution: str | None = Field(default=None, sa_column=Column(Text))


class AlertDelivery(SQLModel, table=True):
    """The outbox of alert notifications: one row per (alert, event, channel).

    Written in the transaction that raised or resolved the alert and sent afterwards, so an
    alert is committed before anyone hears of it, and each event goes out at least once.
    """

    __table_args__ = (UniqueConstraint("alert_id", "event", "channel"),)
    id: int | None = Field(default=None, primary_key=True)
    alert_id: int = Field(foreign_key="alert.id", index=True)
    event: str  # "raised" or "resolved"
    channel: str  # "log" or "webhook"
    target: str
    status: str = Field(default="pending", index=True)  # pending, sending, delivered, failed
    attempts: int = 0
    next_attempt_at: dt.datetime = Field(default_factory=utcnow)
    claimed_by: str | None = None
    claimed_until: dt.datetime | None = None
    delivered_at: dt.datetime | None = None
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    created_at: dt.datetime = Field(default_factory=utcnow)


class MonitorPolicy(SQLModel, table=True):
    """A model's window, retrain and canary settings that operators changed from the defaults
    (`settings` holds only those keys; appliance.monitor.policy resolves the rest)."""

    model_name: str = Field(primary_key=True, foreign_key="registeredmodel.name")
    settings: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    updated_by: str
    updated_at: dt.datetime = Field(default_factory=utcnow)


class RetrainRequest(SQLModel, table=True):
    """One pass of the retrain loop for a model, from trigger to promotion (or its end).

    A durable outbox row: the monitor writes it with the alert that fired it, and the
    orchestrator walks it through its states, each step keyed by this row, so a restart
    resumes where the last process stopped. `active_key` holds the model's name while the
    request is not finished: a unique column, so a model never has two running at once.
    """

    id: int | None = Field(default=None, primary_key=True)
    model_name: str = Field(index=True)
    deployment: str
    active_key: str | None = Field(default=None, unique=True)
    trigger: str
    alert_id: int | None = None
    since_window: int
    state: str = Field(default="waiting_for_labels", index=True)
    champion_version_id: int | None = None
    dataset_id: int | None = None
    run_id: str | None = None
    version_id: int | None = None
    canary_deployment_id: int | None = None
    approval_id: int | None = None
    gate: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    canary: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    # Why it ended (a terminal state's reason); `error` holds the last failed step's error.
    outcome: str | None = Field(default=None, sa_column=Column(Text))
    error: str | None = Field(default=None, sa_column=Column(Text))
    attempts: int = 0
    created_by: str
    created_at: dt.datetime = Field(default_factory=utcnow)
    updated_at: dt.datetime = Field(default_factory=utcnow)
    finished_at: dt.datetime | None = None


class Lease(SQLModel, table=True):
    """A named, expiring lock (one per deployment pass, one per retrain request), so two
    monitor processes never work on the same thing at once."""

    name: str = Field(primary_key=True)
    holder: str
    expires_at: dt.datetime
    acquired_at: dt.datetime = Field(default_factory=utcnow)


class AuditEvent(SQLModel, table=True):
    """Append-only, HMAC-chained: each row's hash covers its content and the previous hash."""

    __table_args__ = (Index("ix_auditevent_object", "object_type", "object_id"),)
    id: int | None = Field(default=None, primary_key=True)
    ts: dt.datetime = Field(default_factory=utcnow)
    actor: str
    action: str = Field(index=True)
    object_type: str
    object_id: str
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    # Unique: two writers that read the same head cannot both append, so the chain never forks.
    prev_hash: str = Field(unique=True)
    hash: str = Field(unique=True)
    # Fingerprint of the HMAC key that signed `hash`; None for events written before the chain
    # was keyed (plain sha256), which verify accepts only up to an explicit anchor.
    key_id: str | None = None
